//! The host side of the sandbox: hostile plugins that attack the host
//! through its calls (time, memory, sizes, text, identities, configuration)
//! rather than through the wasm walls. Each case asserts what the user or
//! the API server sees: the exit code, an empty stdout, a message naming the
//! limit, the time it took, the memory it held, the bytes that reached them.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::harness::webhook::Webhook;
use crate::harness::{HttpStub, UserEnv, audit, probe, test_plugin};

const INTERACTIVE: &str =
    r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":true}}"#;

/// `credbroker get` of the probe doing `behavior` with `limits` (TOML lines)
/// and more `settings` (TOML lines).
fn probe_config(env: &UserEnv, behavior: &str, settings: &str, limits: &str) {
    env.write_config(&format!(
        "[profiles.p]\nplugin = {:?}\n[profiles.p.settings]\nbehavior = {behavior:?}\n{settings}\n[profiles.p.limits]\n{limits}\n",
        probe().display().to_string()
    ));
}

/// The bytes no terminal may receive from a plugin.
fn assert_terminal_safe(what: &str, text: &str) {
    for (bad, name) in [('\x1b', "ESC"), ('\x07', "BEL"), ('\r', "CR"), ('\u{202e}', "RLO"), ('\u{9b}', "CSI")] {
        assert!(!text.contains(bad), "{what}: a raw {name} reached the terminal: {text:?}");
    }
}

#[test]
fn host_work_is_charged_to_the_plugin_and_waiting_is_not() {
    let env = UserEnv::new();
    // Two seconds of 1 ms naps under a 1 s CPU budget: waiting is free (the
    // host's work for 2,000 naps took up to 300 ms on a loaded 2-core machine).
    probe_config(&env, "naps", "count = \"2000\"", "cpu-ms = 1000\ntimeout-ms = 20000");
    let mut command = env.credbroker(&["get", "--provider", "p"]);
    // At trace level the host logs every WASI call it makes for the plugin,
    // which is work on its behalf: measure the naps without that.
    command.env("CREDBROKER_LOG", "warn");
    let (run, _, took) = env.run_measured(command);
    assert_eq!(run.token(), "rested", "{}", run.stderr);
    assert!(took >= Duration::from_secs(2), "{took:?}");

    // Huge lines against hundreds of secrets (fewer than the 256 a run may
    // hold, so that the lines are logged): the host's redaction is bounded
    // and charged, and the run ends by its deadline.
    probe_config(
        &env,
        "log-storm",
        "secrets = \"250\"\nsize = \"4194304\"\nlines = \"50\"",
        "cpu-ms = 100\ntimeout-ms = 1000\nmax-call-bytes = 8388608\nmemory-mib = 64",
    );
    let (run, _, took) = env.run_measured(env.credbroker(&["get", "--provider", "p"]));
    assert!(took < Duration::from_millis(1000 + 1000), "the run ends by its deadline: {took:?}");
    if run.code != Some(0) {
        let error = run.error();
        assert!(error.contains("CPU time limit of 100 ms") || error.contains("time limit of 1000 ms"), "{error}");
    }
    assert!(run.stderr.len() < 256 * 1024, "stderr stays bounded: {} bytes", run.stderr.len());

    // Random bytes are host work: 64 MiB at once is over the call limit, and
    // many smaller requests run into the CPU budget.
    probe_config(&env, "random-flood", "", "cpu-ms = 200\ntimeout-ms = 10000\nmemory-mib = 256");
    let run = env.run(&["get", "--provider", "p"]);
    let error = run.error();
    assert!(error.contains("through `wasi:random`, over its per-call limit (max-call-bytes)"), "{error}");
    probe_config(&env, "random-flood", "size = \"524288\"", "cpu-ms = 200\ntimeout-ms = 10000");
    let (run, _, took) = env.run_measured(env.credbroker(&["get", "--provider", "p"]));
    assert!(run.error().contains("exceeded its CPU time limit of 200 ms"), "{}", run.stderr);
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn what_the_host_keeps_for_a_plugin_is_bounded() {
    let env = UserEnv::new();
    // A thousand distinct secrets of 512 KiB each, with 16 MiB of memory.
    probe_config(&env, "mark-many", "count = \"1000\"\nsize = \"524288\"", "memory-mib = 16\ncpu-ms = 20000");
    let (run, peak_kib, _) = env.run_measured(env.credbroker(&["get", "--provider", "p"]));
    let error = run.error();
    assert!(
        error.contains("marked more secrets than one run may hold") || error.contains("memory limit of 16 MiB"),
        "{error}"
    );
    assert!(peak_kib < 150 * 1024, "credbroker get held {} MiB", peak_kib / 1024);
}

#[test]
fn plugin_text_cannot_drive_the_terminal() {
    let env = UserEnv::new();
    probe_config(&env, "evil-error", "", "");
    let run = env.run(&["get", "--provider", "p"]);
    let error = run.error();
    assert_terminal_safe("a provider's error", error);
    assert!(error.contains(r"nope\x1b]0;owned\x07\x1b[2J\rcredbroker: all good \u{202e}txt.exe"), "{error}");

    // A 16 MiB error is cut to a few KiB.
    probe_config(&env, "evil-error", "size = \"16777216\"", "memory-mib = 128");
    let run = env.run(&["get", "--provider", "p"]);
    assert!(run.error().len() < 16 * 1024, "stderr is {} bytes", run.stderr.len());

    // A secret prompt says which plugin asks.
    let mut command =
        env.credbroker(&["get", "--plugin", probe().to_str().unwrap(), "--set", "behavior=secret-prompt"]);
    command
        .env("KUBERNETES_EXEC_INFO", INTERACTIVE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"pw-answer-1\n").unwrap();
    audit::secret("pw-answer-1");
    let run = crate::harness::Run::of(child.wait_with_output().unwrap());
    assert_eq!(run.token(), "pw-answer-1");
    assert!(
        run.stderr.contains("[credbroker: plugin `test_plugin_probe.wasm` asks (hidden input)] Password: "),
        "{}",
        run.stderr
    );

    // Messages count against log-bytes.
    probe_config(&env, "show-flood", "count = \"200\"", "log-bytes = 10000");
    let run = env.run(&["get", "--provider", "p"]);
    assert_eq!(run.token(), "shown");
    assert!(run.stderr.len() < 40_000, "stderr is {} bytes", run.stderr.len());
}

#[test]
fn secrets_stay_out_of_every_channel() {
    let env = UserEnv::new();
    // A secret (a setting from the environment) straddling the 4096-byte cut
    // of a stderr line.
    let secret = "s3cret-\"straddling\"&value";
    audit::secret(secret);
    probe_config(&env, "stderr-split", "secret = \"env:PROBE_SECRET\"", "");
    let mut command = env.credbroker(&["get", "--provider", "p"]);
    command.env("PROBE_SECRET", secret);
    let (run, _, _) = env.run_measured(command);
    assert_eq!(run.token(), "split", "{}", run.stderr);
    assert!(run.stderr.contains("[REDACTED]") || run.stderr.contains("more bytes cut"), "{}", run.stderr);

    // The secret inside a logged JSON body and a logged form body.
    probe_config(&env, "log-escaped", "secret = \"env:PROBE_SECRET\"", "");
    let mut command = env.credbroker(&["get", "--provider", "p", "-vv"]);
    command.env("PROBE_SECRET", secret);
    let (run, _, _) = env.run_measured(command);
    assert_eq!(run.token(), "logged", "{}", run.stderr);
    for form in [r#"s3cret-\"straddling\"&value"#, "s3cret-%22straddling%22%26value"] {
        assert!(!run.stderr.contains(form), "{form} leaked: {}", run.stderr);
    }
    assert!(run.stderr.contains(r#"{"password":"[REDACTED]"}"#), "{}", run.stderr);

    // A question quoting a secret.
    let mut command = env.credbroker(&["get", "--provider", "p"]);
    probe_config(&env, "prompt-quoting", "secret = \"env:PROBE_SECRET\"", "");
    command.env("PROBE_SECRET", secret).env("KUBERNETES_EXEC_INFO", INTERACTIVE).stdin(Stdio::piped());
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"ok-answer\n").unwrap();
    let run = crate::harness::Run::of(child.wait_with_output().unwrap());
    assert!(run.stderr.contains("Type [REDACTED] to confirm:"), "{}", run.stderr);
}

#[test]
fn the_api_server_gets_small_well_formed_answers_that_never_quote_the_token() {
    let env = UserEnv::new();
    let plugin = probe().display().to_string();
    let validator = |name: &str, behavior: &str, limits: &str| {
        format!(
            "[[validators]]\nname = {name:?}\nplugin = {plugin:?}\ntoken-prefix = \"{name}-\"\n[validators.settings]\nbehavior = {behavior:?}\n[validators.limits]\n{limits}\n"
        )
    };
    let config = [
        "[cache]\npositive-ttl-seconds = 30\n".to_string(),
        validator("groups", "many-groups", "memory-mib = 128"),
        validator("reason", "huge-reject", "memory-mib = 128"),
        validator("quoting", "reject-quoting", ""),
    ]
    .concat();
    let webhook = Webhook::start(&env, &config);
    let (status, answer) = webhook.review("v1", "groups-token", &[]);
    assert_eq!(status, 200);
    let body = answer.to_string();
    assert!(body.len() < 64 * 1024, "the TokenReview is {} bytes", body.len());
    assert_eq!(answer["status"]["authenticated"], false);
    assert!(body.contains("over the per-call limit (max-call-bytes)"), "{body}");

    let (_, answer) = webhook.review("v1", "reason-token", &[]);
    assert!(answer.to_string().len() < 64 * 1024, "a 16 MiB rejection reason is cut");

    let token = "quoting-9f8e7d6c5b4a";
    audit::secret(token);
    let (_, answer) = webhook.review("v1", token, &[]);
    let error = answer["status"]["error"].as_str().unwrap();
    assert_eq!(error, "quoting: the token [REDACTED] is not one of mine");
    assert!(!webhook.log().contains(token));
}

#[test]
fn login_rejections_are_logged_without_the_password() {
    let env = UserEnv::new();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap().serialize_pem();
    std::fs::write(env.home().join("signing.pem"), key).unwrap();
    let config = format!(
        "[login]\nsigning-key-file = {:?}\n[[validators]]\nname = \"corp\"\nplugin = {:?}\n[validators.settings]\nbehavior = \"login-quoting\"\n",
        env.home().join("signing.pem").display().to_string(),
        test_plugin("login-probe").display().to_string()
    );
    let webhook = Webhook::start(&env, &config);
    let password = "hunter2-login-pw";
    audit::secret(password);
    let response = crate::harness::webhook::client(&webhook.server_ca.cert_pem, None)
        .post(format!("{}/v1/login/corp", webhook.url))
        .json(&json!({ "username": "alice", "password": password }))
        .send()
        .unwrap();
    assert_eq!(response.status(), 401);
    webhook.wait_for("the log line", || webhook.log().contains("login failed"));
    assert!(webhook.log().contains("alice typed [REDACTED], which is wrong"), "{}", webhook.log());
}

#[test]
fn login_backends_mint_tokens_only_for_granted_identities() {
    let env = UserEnv::new();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap().serialize_pem();
    std::fs::write(env.home().join("signing.pem"), key).unwrap();
    let backend = |name: &str, username: &str, groups: &str, identities: &str| {
        format!(
            "[[validators]]\nname = {name:?}\nplugin = {:?}\n[validators.settings]\nbehavior = \"login-as\"\nusername = {username:?}\ngroups = {groups:?}\n[validators.identities]\n{identities}\n",
            test_plugin("login-probe").display().to_string()
        )
    };
    let config = [
        format!("[login]\nsigning-key-file = {:?}\n", env.home().join("signing.pem").display().to_string()),
        backend("rogue", "alice", "devs,system:masters", ""),
        backend("admins", "alice", "system:masters", "groups = [\"system:masters\"]"),
    ]
    .concat();
    let webhook = Webhook::start(&env, &config);
    let login = |backend: &str| {
        let response = crate::harness::webhook::client(&webhook.server_ca.cert_pem, None)
            .post(format!("{}/v1/login/{backend}", webhook.url))
            .json(&json!({ "username": "alice", "password": "any-password" }))
            .send()
            .unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().unwrap())
    };

    let (status, answer) = login("rogue");
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"], "the login backend named an identity it may not assert");
    assert!(answer.get("token").is_none(), "no token is minted: {answer}");
    assert_eq!(webhook.metric(r#"credbroker_identity_refusals_total{validator="rogue",kind="group"}"#), 1.0);
    webhook.wait_for("the refusal in the log", || webhook.log().contains("login refused: identity not granted"));

    // Granted, the same identity gets a token, and the token reviews as it.
    let (status, answer) = login("admins");
    assert_eq!(status, 200, "{answer}");
    let token = answer["token"].as_str().unwrap().to_string();
    audit::secret(&token);
    let (_, review) = webhook.review("v1", &token, &[]);
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(review["status"]["user"]["groups"], json!(["system:masters"]), "{review}");
}

#[test]
fn hostile_configuration_is_refused_at_load_with_the_cause() {
    let env = UserEnv::new();
    let fifo = env.home().join("fifo.wasm");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (run, _, took) = env.run_measured(env.credbroker(&["get", "--plugin", fifo.to_str().unwrap()]));
    assert!(run.error().contains("it is a FIFO, not a regular file"), "{}", run.stderr);
    assert!(took < Duration::from_secs(5), "a FIFO does not hang get: {took:?}");
    for (args, cause) in [
        (vec!["get", "--plugin", "/dev/zero"], "it is a character device, not a regular file"),
        (vec!["get", "--provider", "static", "--set", "x=file:/dev/zero"], "`/dev/zero` is a character device"),
        (vec!["get", "--config", "/dev/zero", "--provider", "static"], "it is a character device"),
        (vec!["get", "--provider", "evil\nINFO fake log line"], r"unknown provider `evil\nINFO fake log line`"),
    ] {
        let run = env.run(&args);
        let error = run.error();
        assert!(error.contains(cause), "{args:?}: {error}");
        assert!(!error.contains("\nINFO fake"), "{args:?}: a name made a log line: {error}");
    }
    env.write_config("[profiles.p]\nplugin = \"static\"\n[profiles.p.limits]\ntable-elements = 4000000000\n");
    let run = env.run(&["get", "--provider", "p"]);
    assert!(run.error().contains("limit `table-elements` must be between 1 and 1000000"), "{}", run.stderr);

    let config = env.home().join("serve.toml");
    std::fs::write(
        &config,
        "[server]\ninsecure-plain-http = true\n[cache]\npositive-ttl-seconds = 9300000000000000000\n[[validators]]\nname = \"t\"\nplugin = \"token-file\"\n",
    )
    .unwrap();
    let check = env.run(&["serve", "--config", config.to_str().unwrap(), "--check"]);
    assert!(check.error().contains("[cache] `positive-ttl-seconds` must be between 0 and 86400"), "{}", check.stderr);
}

#[test]
fn the_smaller_promises_hold() {
    let env = UserEnv::new();
    // Garbage DER inside valid PEM is not handed to kubectl.
    let garbage = "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZSBkZXI=\n-----END CERTIFICATE-----\n";
    let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    std::fs::write(env.home().join("cert.pem"), garbage).unwrap();
    std::fs::write(env.home().join("key.pem"), &key).unwrap();
    let run = env.run(&[
        "get",
        "--provider",
        "static",
        "--set",
        &format!("client-certificate=file:{}", env.home().join("cert.pem").display()),
        "--set",
        &format!("client-key=file:{}", env.home().join("key.pem").display()),
    ]);
    assert!(run.error().contains("not a valid X.509 certificate"), "{}", run.stderr);

    // exit(0) is no crash.
    probe_config(&env, "exit", "", "");
    let run = env.run(&["get", "--provider", "p"]);
    let error = run.error();
    assert!(error.contains("exited (status 0) instead of returning a result"), "{error}");
    assert!(!error.contains("backtrace") && !error.contains("crashed"), "{error}");

    // The instance limit is named.
    probe_config(&env, "echo", "value = \"v\"", "instances = 1");
    let run = env.run(&["get", "--provider", "p"]);
    assert!(run.error().contains("exceeded its limit of 1 wasm instances (instances)"), "{}", run.stderr);

    // No proxy from the environment...
    let stub = HttpStub::start(vec![("/direct", crate::harness::Answer::ok("direct"))]);
    probe_config(&env, "http", &format!("url = \"{}/direct\"", stub.origin()), "");
    let mut config = std::fs::read_to_string(env.config_dir().join("config.toml")).unwrap();
    config.push_str(&format!("[profiles.p.grants]\nhttp = [{:?}]\n", stub.origin()));
    env.write_config(&config);
    let mut command = env.credbroker(&["get", "--provider", "p"]);
    command.env("HTTP_PROXY", "http://127.0.0.1:9").env("http_proxy", "http://127.0.0.1:9");
    let (run, _, _) = env.run_measured(command);
    assert_eq!(run.token(), "200:direct", "{}", run.stderr);
    // ...only the one the operator grants.
    let proxy = HttpStub::start(vec![(&*format!("{}/direct", stub.origin()), crate::harness::Answer::ok("proxied"))]);
    env.write_config(&format!("{config}http-proxy = {:?}\n", proxy.origin()));
    let run = env.run(&["get", "--provider", "p"]);
    assert_eq!(run.token(), "200:proxied", "{}", run.stderr);
}
