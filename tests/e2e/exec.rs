//! `credbroker get` as kubectl's exec credential plugin: the exec protocol,
//! provider selection, configuration and the credential cache.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Answer, HttpStub, Run, UserEnv, probe};

const V1_EXEC_INFO: &str = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"cluster":{"server":"https://10.0.0.1:6443","certificate-authority-data":"Y2EtZGF0YQ==","config":{"audience":"prod"}},"interactive":false}}"#;

/// A profile `counted` whose provider fetches its token from `stub`'s
/// `/token`, so the stub's hit count is the number of provider runs.
fn counted_profile(env: &UserEnv, stub: &HttpStub, extra: &str) {
    env.write_config(&format!(
        "[profiles.counted]\nplugin = {:?}\n{extra}\n[profiles.counted.settings]\nbehavior = \"http\"\nurl = \"{}/token\"\nexpires-in = \"3600\"\n[profiles.counted.grants]\nhttp = [{:?}]\n",
        probe().display().to_string(),
        stub.origin(),
        stub.origin()
    ));
}

#[test]
fn an_unknown_provider_lists_what_exists() {
    let env = UserEnv::new();
    env.write_config("[profiles.corp-ldap]\nplugin = \"static\"\n");
    std::fs::create_dir_all(env.plugin_dir()).unwrap();
    std::fs::copy(probe(), env.plugin_dir().join("corp-probe.wasm")).unwrap();
    let run = env.run(&["get", "--provider", "nope"]);
    assert_eq!(
        run.error().trim(),
        "credbroker: error: unknown provider `nope`; profiles: corp-ldap; plugins: aws-iam, corp-probe, ldap, oidc, static"
    );
}

#[test]
fn installed_plugins_are_found_by_name() {
    let env = UserEnv::new();
    std::fs::create_dir_all(env.plugin_dir()).unwrap();
    std::fs::copy(probe(), env.plugin_dir().join("corp-probe.wasm")).unwrap();
    let run = env.run(&["get", "--provider", "corp-probe", "--set", "behavior=echo", "--set", "value=installed"]);
    assert_eq!(run.token(), "installed");
}

#[test]
fn the_provider_comes_from_the_flag_or_the_environment() {
    let env = UserEnv::new();
    let from_env = env
        .credbroker(&["get", "--set", "token=abc"])
        .env("CREDBROKER_PROVIDER", "static")
        .output()
        .map(Run::of)
        .unwrap();
    assert_eq!(from_env.token(), "abc");

    // The flag wins over the environment.
    let flag_wins = env
        .credbroker(&["get", "--provider", "static", "--set", "token=abc"])
        .env("CREDBROKER_PROVIDER", "nope")
        .output()
        .map(Run::of)
        .unwrap();
    assert_eq!(flag_wins.token(), "abc");

    let neither = env.run(&["get"]);
    assert!(neither.error().contains("--provider"), "{}", neither.stderr);
}

#[test]
fn a_pinned_digest_refuses_any_other_plugin() {
    let env = UserEnv::new();
    let wrong = "0".repeat(64);
    env.write_config(&format!("[profiles.pinned]\nplugin = \"static\"\nsha256 = \"{wrong}\"\n"));
    let run = env.run(&["get", "--provider", "pinned", "--set", "token=abc"]);
    let error = run.error();
    assert!(error.contains(&format!("but the configuration pins {wrong}; refusing to run it")), "{error}");
    let actual = error.split("has sha256 ").nth(1).unwrap().split(',').next().unwrap().to_string();
    assert_eq!(actual.len(), 64);

    env.write_config(&format!("[profiles.pinned]\nplugin = \"static\"\nsha256 = \"{actual}\"\n"));
    assert_eq!(env.run(&["get", "--provider", "pinned", "--set", "token=abc"]).token(), "abc");
}

#[test]
fn the_answer_uses_the_api_version_kubectl_asked_for() {
    let env = UserEnv::new();
    let run = env
        .credbroker(&["get", "--provider", "static", "--set", "token=abc"])
        .env("KUBERNETES_EXEC_INFO", V1_EXEC_INFO)
        .output()
        .map(Run::of)
        .unwrap();
    let credential = run.credential();
    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(credential["status"]["token"], "abc");

    let flagged = env.run(&["get", "--provider", "static", "--set", "token=abc", "--api-version", "v1"]).credential();
    assert_eq!(flagged["apiVersion"], "client.authentication.k8s.io/v1");
    let default = env.run(&["get", "--provider", "static", "--set", "token=abc"]).credential();
    assert_eq!(default["apiVersion"], "client.authentication.k8s.io/v1beta1");
}

#[test]
fn malformed_exec_info_is_a_clear_error() {
    let env = UserEnv::new();
    for (info, expected) in [
        ("{not json", "KUBERNETES_EXEC_INFO is not a valid ExecCredential"),
        (r#"{"kind":"Pod","apiVersion":"v1"}"#, "KUBERNETES_EXEC_INFO has kind `Pod`, expected `ExecCredential`"),
        (
            r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1alpha1","spec":{}}"#,
            "KUBERNETES_EXEC_INFO has apiVersion `client.authentication.k8s.io/v1alpha1`",
        ),
    ] {
        let run = env
            .credbroker(&["get", "--provider", "static", "--set", "token=abc"])
            .env("KUBERNETES_EXEC_INFO", info)
            .output()
            .map(Run::of)
            .unwrap();
        assert!(run.error().contains(expected), "{info}: {}", run.stderr);
    }
}

#[test]
fn exec_info_that_is_not_utf8_is_an_error_not_v1beta1() {
    use std::os::unix::ffi::OsStrExt;
    let env = UserEnv::new();
    // A v1 request with one byte that is not UTF-8 in a string: unreadable,
    // not absent, so no v1beta1 answer for a client that asked for v1.
    let mut info = V1_EXEC_INFO.as_bytes().to_vec();
    let at = info.windows(4).position(|w| w == b"prod").unwrap();
    info[at] = 0xff;
    let run = env
        .credbroker(&["get", "--provider", "static", "--set", "token=abc"])
        .env("KUBERNETES_EXEC_INFO", std::ffi::OsStr::from_bytes(&info))
        .output()
        .map(Run::of)
        .unwrap();
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(
        run.error().trim(),
        "credbroker: error: KUBERNETES_EXEC_INFO is not valid UTF-8, so not an ExecCredential"
    );
}

#[test]
fn huge_or_deeply_nested_exec_info_is_handled() {
    let env = UserEnv::new();
    // The kernel caps one environment variable at 128 KiB: fill most of it
    // with a cluster extension config the provider receives whole.
    let config = serde_json::json!({ "blob": "x".repeat(120 * 1024) });
    let info = serde_json::json!({
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1",
        "spec": {"interactive": false, "cluster": {"server": "https://big.example", "config": config}},
    })
    .to_string();
    let run = env
        .credbroker(&["get", "--provider", "static", "--set", "token=abc"])
        .env("KUBERNETES_EXEC_INFO", &info)
        .output()
        .map(Run::of)
        .unwrap();
    assert_eq!(run.token(), "abc", "{}", run.stderr);

    let nested = format!("{}{}", "[".repeat(60_000), "]".repeat(60_000));
    let run = env
        .credbroker(&["get", "--provider", "static", "--set", "token=abc"])
        .env("KUBERNETES_EXEC_INFO", &nested)
        .output()
        .map(Run::of)
        .unwrap();
    assert_eq!(run.code, Some(1), "no stack overflow: {}", run.stderr);
    assert!(run.error().contains("KUBERNETES_EXEC_INFO is not a valid ExecCredential"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn an_unusable_cache_is_skipped_with_a_warning() {
    let env = UserEnv::new();
    // The cache directory is a file: nothing can be read or written there.
    std::fs::create_dir_all(env.cache_dir()).unwrap();
    std::fs::write(env.cache_dir().join("credentials"), b"not a directory").unwrap();
    let args = ["get", "--provider", "static", "--set", "token=abc", "--set", "expires-in=3600"];
    let run = env.run(&args);
    assert_eq!(run.token(), "abc", "{}", run.stderr);
    assert!(run.stderr.contains("continuing without the credential cache"), "{}", run.stderr);
    assert_eq!(std::fs::read(env.cache_dir().join("credentials")).unwrap(), b"not a directory", "left alone");
}

#[test]
fn cluster_info_and_interactivity_reach_the_provider() {
    let env = UserEnv::new();
    let run = env
        .credbroker(&["get", "--plugin", probe().to_str().unwrap(), "--set", "behavior=cluster"])
        .env("KUBERNETES_EXEC_INFO", V1_EXEC_INFO)
        .output()
        .map(Run::of)
        .unwrap();
    // server | extension config as JSON | bytes of the decoded CA ("ca-data")
    assert_eq!(run.token(), r#"https://10.0.0.1:6443|{"audience":"prod"}|7"#);

    let interactive = V1_EXEC_INFO.replace(r#""interactive":false"#, r#""interactive":true"#);
    let run = env
        .credbroker(&["get", "--plugin", probe().to_str().unwrap(), "--set", "behavior=interactive"])
        .env("KUBERNETES_EXEC_INFO", &interactive)
        .output()
        .map(Run::of)
        .unwrap();
    assert_eq!(run.token(), "true");
    assert_eq!(run.credential()["spec"]["interactive"], true);
}

#[test]
fn config_mistakes_name_the_file_and_the_line() {
    let env = UserEnv::new();
    env.write_config("[profiles.a]\nplugin = \"static\"\nlimits = { cpu-ms = \"fast\" }\n");
    let run = env.run(&["get", "--provider", "a"]);
    let error = run.error();
    assert!(error.contains("invalid configuration"), "{error}");
    assert!(error.contains("config.toml"), "{error}");
    assert!(error.contains("line 3"), "{error}");

    let missing = env.run(&["get", "--provider", "a", "--config", "/nonexistent/credbroker.toml"]);
    assert!(missing.error().contains("cannot read the configuration `/nonexistent/credbroker.toml`"));
}

#[test]
fn credentials_are_reused_until_they_expire() {
    let stub = HttpStub::start(vec![("/token", Answer::ok("fresh"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, "");
    let first = env.run(&["get", "--provider", "counted"]).credential();
    let second = env.run(&["get", "--provider", "counted"]).credential();
    assert_eq!(first, second);
    assert_eq!(first["status"]["token"], "200:fresh");
    assert_eq!(stub.hits("/token"), 1, "the second run is served from the cache");

    // The entry is private.
    let credentials = env.cache_dir().join("credentials");
    assert_eq!(std::fs::metadata(&credentials).unwrap().permissions().mode() & 0o777, 0o700);
    for entry in std::fs::read_dir(&credentials).unwrap().flatten() {
        assert_eq!(entry.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{:?}", entry.path());
    }

    // --no-cache runs the provider, and different settings are a different key.
    env.run(&["get", "--provider", "counted", "--no-cache"]).credential();
    env.run(&["get", "--provider", "counted", "--set", "extra=1"]).credential();
    assert_eq!(stub.hits("/token"), 3);

    // `cache clear` forgets them.
    let cleared = env.run(&["cache", "clear", "--provider", "counted"]);
    assert_eq!(cleared.code, Some(0));
    assert!(cleared.stderr.contains("removed 2 cached credentials of provider `counted`"), "{}", cleared.stderr);
    env.run(&["get", "--provider", "counted"]).credential();
    assert_eq!(stub.hits("/token"), 4);
}

#[test]
fn a_cache_hit_does_not_start_the_runtime() {
    let env = UserEnv::new();
    let args = ["get", "--provider", "static", "--set", "token=abc", "--set", "expires-in=3600"];
    env.run(&args).credential();
    let artifacts = env.cache_dir().join("artifacts");
    std::fs::remove_dir_all(&artifacts).unwrap();
    assert_eq!(env.run(&args).token(), "abc");
    assert!(!artifacts.exists(), "a cache hit must not load (or compile) the plugin");
}

#[test]
fn an_expiring_credential_is_renewed() {
    let stub = HttpStub::start(vec![("/token", Answer::ok("t"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, "cache-margin-seconds = 0");
    let config = std::fs::read_to_string(env.config_dir().join("config.toml")).unwrap();
    env.write_config(&config.replace("expires-in = \"3600\"", "expires-in = \"2\""));
    env.run(&["get", "--provider", "counted"]).credential();
    env.run(&["get", "--provider", "counted"]).credential();
    assert_eq!(stub.hits("/token"), 1);
    std::thread::sleep(Duration::from_millis(2100));
    env.run(&["get", "--provider", "counted"]).credential();
    assert_eq!(stub.hits("/token"), 2, "an expired credential is fetched again");
}

#[test]
fn credentials_without_expiry_are_not_cached_unless_configured() {
    let stub = HttpStub::start(vec![("/token", Answer::ok("t"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, "");
    let config = std::fs::read_to_string(env.config_dir().join("config.toml")).unwrap();
    env.write_config(&config.replace("expires-in = \"3600\"\n", ""));
    env.run(&["get", "--provider", "counted"]).credential();
    env.run(&["get", "--provider", "counted"]).credential();
    assert_eq!(stub.hits("/token"), 2);

    counted_profile(&env, &stub, "cache-ttl-seconds = 600");
    let config = std::fs::read_to_string(env.config_dir().join("config.toml")).unwrap();
    env.write_config(&config.replace("expires-in = \"3600\"\n", ""));
    let first = env.run(&["get", "--provider", "counted"]).credential();
    env.run(&["get", "--provider", "counted"]).credential();
    assert_eq!(stub.hits("/token"), 3);
    assert!(first["status"].get("expirationTimestamp").is_none(), "a TTL is not the credential's expiry");
}

#[test]
fn a_corrupt_cache_entry_is_a_miss() {
    let stub = HttpStub::start(vec![("/token", Answer::ok("t"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, "");
    env.run(&["get", "--provider", "counted"]).credential();
    let credentials = env.cache_dir().join("credentials");
    for entry in std::fs::read_dir(&credentials).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "json") {
            std::fs::write(entry.path(), b"{ truncated").unwrap();
        }
    }
    let run = env.run(&["get", "--provider", "counted"]);
    assert_eq!(run.token(), "200:t");
    assert!(run.stderr.contains("ignoring corrupt cache entry"), "{}", run.stderr);
    assert_eq!(stub.hits("/token"), 2);
}

#[test]
fn an_unsafe_cache_directory_is_made_private() {
    let env = UserEnv::new();
    let args = ["get", "--provider", "static", "--set", "token=abc", "--set", "expires-in=3600"];
    env.run(&args).credential();
    let credentials = env.cache_dir().join("credentials");
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = env.run(&args);
    assert_eq!(run.token(), "abc");
    assert!(run.stderr.contains("had mode 0777, which let other users in; changed it to 0700"), "{}", run.stderr);
    assert_eq!(std::fs::metadata(&credentials).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn parallel_runs_log_in_once() {
    let stub = HttpStub::start(vec![("/token", Answer::ok("shared"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, "");
    let children: Vec<_> = (0..50)
        .map(|_| {
            env.credbroker(&["get", "--provider", "counted"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<Run> = children.into_iter().map(|c| Run::of(c.wait_with_output().unwrap())).collect();
    let first = runs[0].credential();
    for run in &runs {
        assert_eq!(run.credential(), first, "every process prints the same credential");
    }
    assert_eq!(stub.hits("/token"), 1, "the provider ran once");
}

#[test]
fn a_killed_lock_holder_does_not_block_the_next_run() {
    let stub = HttpStub::start(vec![("/token", Answer::ok_after_hanging_once("after"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, "[profiles.counted.limits]\ntimeout-ms = 600000");
    let mut holder =
        env.credbroker(&["get", "--provider", "counted"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Wait until the holder's provider is stuck in the backend, holding the lock.
    let started = Instant::now();
    while stub.hits("/token") == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the first run never reached the backend");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(holder.id() as i32, libc::SIGKILL) };
    holder.wait().unwrap();
    let run = env.run(&["get", "--provider", "counted"]);
    assert_eq!(run.token(), "200:after");
}
