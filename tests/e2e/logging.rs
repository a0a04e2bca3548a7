//! What credbroker's log lines look like where they land: plain text in a pipe
//! or a file (kubectl capturing a plugin's stderr, container logs), colour on a
//! terminal unless `NO_COLOR` is set, one JSON object per line when asked.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{Run, UserEnv, probe};

/// The start of every ANSI colour escape.
const ESCAPE: &str = "\x1b[";

/// `credbroker -v get` with a plugin that logs two lines (shown at info).
fn logging_get() -> Vec<String> {
    let plugin = probe().display().to_string();
    ["-v", "get", "--plugin", &plugin, "--no-cache", "--set", "behavior=log-secret", "--set", "secret=s3"]
        .map(String::from)
        .to_vec()
}

/// Both ways the logger is set up: by the level of `-v` (the formatter built
/// when the first line is logged) and by `CREDBROKER_LOG` directives (built at
/// once; the harness sets them for every other test).
const SETUPS: [Option<&str>; 2] = [None, Some("info")];

/// `credbroker ARGS` in `env` with the logger set up by `directives`.
fn credbroker(env: &UserEnv, args: &[String], directives: Option<&str>) -> Command {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = env.credbroker(&args);
    match directives {
        Some(directives) => command.env("CREDBROKER_LOG", directives),
        None => command.env_remove("CREDBROKER_LOG"),
    };
    command
}

/// `command` run on a pseudo-terminal (`script`), with what the terminal showed.
fn on_a_terminal(command: &Command) -> Run {
    let line = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| format!("'{}'", a.to_str().expect("utf-8").replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    script.args(["-qec", &line, "/dev/null"]).stdin(Stdio::null());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => script.env(name, value),
            None => script.env_remove(name),
        };
    }
    Run::of(script.output().expect("script (util-linux)"))
}

#[test]
fn logs_in_a_pipe_or_a_file_have_no_colour() {
    let env = UserEnv::new();
    for setup in SETUPS {
        let piped = Run::of(credbroker(&env, &logging_get(), setup).env_remove("NO_COLOR").output().unwrap());
        assert_eq!(piped.code, Some(0), "{}", piped.stderr);
        assert!(piped.stderr.contains("INFO the secret is s3"), "{setup:?}: {}", piped.stderr);
        assert!(!piped.stderr.contains(ESCAPE), "{setup:?}: {:?}", piped.stderr);

        let file = env.home().join("stderr.log");
        let status = credbroker(&env, &logging_get(), setup)
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&file).unwrap())
            .status()
            .unwrap();
        assert!(status.success());
        let written = std::fs::read_to_string(&file).unwrap();
        assert!(written.contains("INFO the secret is s3") && !written.contains(ESCAPE), "{setup:?}: {written:?}");
    }
}

#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    let env = UserEnv::new();
    for setup in SETUPS {
        for (no_color, coloured) in [(None, true), (Some(""), true), (Some("1"), false), (Some("false"), false)] {
            let mut command = credbroker(&env, &logging_get(), setup);
            match no_color {
                Some(value) => command.env("NO_COLOR", value),
                None => command.env_remove("NO_COLOR"),
            };
            let shown = on_a_terminal(&command);
            assert_eq!(shown.code, Some(0), "{}", shown.stdout);
            assert!(shown.stdout.contains("the secret is s3"), "{}", shown.stdout);
            assert_eq!(shown.stdout.contains(ESCAPE), coloured, "{setup:?}, NO_COLOR={no_color:?}: {:?}", shown.stdout);
        }
    }
}

/// Every line of `log` parsed as JSON.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l:?}")))
        .collect()
}

#[test]
fn json_logs_are_one_object_per_line() {
    let env = UserEnv::new();
    for setup in SETUPS {
        let run =
            Run::of(credbroker(&env, &logging_get(), setup).env("CREDBROKER_LOG_FORMAT", "json").output().unwrap());
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let lines = json_lines(&run.stderr);
        let logged = lines.iter().find(|l| l["fields"]["message"] == "the secret is s3").expect("the plugin's line");
        assert_eq!(logged["level"], "INFO");
        assert_eq!(logged["target"], "credbroker::plugin");
        assert!(logged["timestamp"].is_string(), "{logged}");
        // On a terminal too: JSON is never coloured.
        let shown = on_a_terminal(credbroker(&env, &logging_get(), setup).env("CREDBROKER_LOG_FORMAT", "json"));
        assert!(shown.stdout.contains(r#""message":"the secret is s3""#), "{setup:?}: {}", shown.stdout);
        assert!(!shown.stdout.contains(ESCAPE), "{setup:?}: {}", shown.stdout);
    }

    let bad = Run::of(credbroker(&env, &logging_get(), None).env("CREDBROKER_LOG_FORMAT", "xml").output().unwrap());
    assert_eq!(bad.code, Some(1));
    assert_eq!(bad.stderr, "credbroker: error: CREDBROKER_LOG_FORMAT must be `text` or `json`, not `xml`\n");
    assert!(bad.stdout.is_empty());
}

#[test]
fn serve_logs_json_with_the_flag() {
    let env = UserEnv::new();
    let csv = env.home().join("tokens.csv");
    std::fs::write(&csv, "tok-alice,alice,1001\n").unwrap();
    let config = env.home().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ninsecure-plain-http = true\nlisten = \"127.0.0.1:0\"\n[[validators]]\nname = \"tokens\"\n\
             plugin = \"token-file\"\n[validators.settings]\npath = {csv:?}\n[validators.grants]\nfiles = [{csv:?}]\n",
            csv = csv.display().to_string()
        ),
    )
    .unwrap();
    // The flag wins over the variable.
    let mut server = env
        .credbroker(&["serve", "--config", config.to_str().unwrap(), "--log-format", "json"])
        .env("CREDBROKER_LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(server.stderr.take().unwrap()).lines().map_while(Result::ok) {
        let done = line.contains("serving TokenReviews on");
        seen.push(line);
        if done {
            break;
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let lines = json_lines(&seen.join("\n"));
    let serving = lines.last().expect("log lines");
    assert_eq!(serving["level"], "INFO", "{serving}");
    assert!(serving["fields"]["message"].as_str().unwrap().starts_with("serving TokenReviews on http://127.0.0.1:"));
    assert!(lines.iter().any(|l| l["level"] == "WARN"), "the plain-HTTP warning: {lines:?}");

    let check = env.run(&["serve", "--config", config.to_str().unwrap(), "--check", "--log-format", "yaml"]);
    assert_eq!(check.code, Some(2), "{}", check.stderr);
    assert!(check.stderr.contains("invalid value 'yaml' for '--log-format <FORMAT>'"), "{}", check.stderr);
}
