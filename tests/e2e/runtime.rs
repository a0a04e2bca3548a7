//! The sandboxed runtime, as a user of `credbroker get` meets it: capabilities
//! granted and refused, limits enforced, contracts checked, artifacts cached.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Answer, HttpStub, Run, UserEnv, probe};

/// A config profile `p` running the probe with `behavior` and extra TOML.
fn probe_profile(env: &UserEnv, behavior: &str, extra: &str) {
    env.write_config(&format!(
        "[profiles.p]\nplugin = {:?}\n{extra}\n[profiles.p.settings]\nbehavior = {behavior:?}\n",
        probe().display().to_string()
    ));
}

#[test]
fn static_provider_prints_the_configured_token() {
    let env = UserEnv::new();
    let credential = env.run(&["get", "--provider", "static", "--set", "token=abc"]).credential();
    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1beta1");
    assert_eq!(credential["kind"], "ExecCredential");
    assert_eq!(credential["status"]["token"], "abc");
    assert!(credential["status"].get("expirationTimestamp").is_none());
}

#[test]
fn static_provider_takes_secrets_from_env_and_file_references() {
    let env = UserEnv::new();
    let from_env = env
        .credbroker(&["get", "--provider", "static", "--set", "token=env:MY_TOKEN"])
        .env("MY_TOKEN", "from-env")
        .output()
        .unwrap();
    assert_eq!(crate::harness::Run::of(from_env).token(), "from-env");

    let file = env.home().join("token.txt");
    std::fs::write(&file, "from-file\n").unwrap();
    let arg = format!("token=file:{}", file.display());
    assert_eq!(env.run(&["get", "--provider", "static", "--no-cache", "--set", &arg]).token(), "from-file");

    let missing = env.run(&["get", "--provider", "static", "--set", "token=env:CREDBROKER_TEST_NOT_SET"]);
    assert_eq!(
        missing.error().trim(),
        "credbroker: error: setting `token`: environment variable `CREDBROKER_TEST_NOT_SET` is not set"
    );
}

#[test]
fn static_provider_gives_an_expiry_and_a_client_certificate() {
    let env = UserEnv::new();
    let credential =
        env.run(&["get", "--provider", "static", "--set", "token=abc", "--set", "expires-in=3600"]).credential();
    let expiry = credential["status"]["expirationTimestamp"].as_str().unwrap();
    let expiry = humantime_seconds(expiry);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((expiry - now - 3600).abs() < 60, "expiry {expiry} is not an hour from {now}");

    let cert = rcgen::generate_simple_self_signed(vec!["alice".to_string()]).unwrap();
    let dir = env.home();
    std::fs::write(dir.join("c.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("k.pem"), cert.signing_key.serialize_pem()).unwrap();
    let credential = env
        .run(&[
            "get",
            "--provider",
            "static",
            "--set",
            &format!("client-certificate=file:{}", dir.join("c.pem").display()),
            "--set",
            &format!("client-key=file:{}", dir.join("k.pem").display()),
        ])
        .credential();
    assert_eq!(credential["status"]["clientCertificateData"], cert.cert.pem().trim_end());
    assert!(credential["status"]["clientKeyData"].as_str().unwrap().contains("PRIVATE KEY"));
    assert!(credential["status"].get("token").is_none());
}

/// Seconds since the epoch of an RFC 3339 UTC time like `2026-01-02T03:04:05Z`.
fn humantime_seconds(text: &str) -> i64 {
    let (date, time) = text.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let t: Vec<i64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]
}

#[test]
fn plugins_get_no_ambient_authority() {
    let env = UserEnv::new();
    probe_profile(&env, "ambient", "");
    let token = env
        .credbroker(&["get", "--provider", "p"])
        .env("SOME_SECRET_ENV", "x")
        .output()
        .map(crate::harness::Run::of)
        .unwrap()
        .token();
    assert_eq!(token, "fs=denied,dir=denied,env=empty,args=empty,net=denied,stdin=closed");
}

#[test]
fn plugin_stdout_never_reaches_kubectl() {
    let env = UserEnv::new();
    probe_profile(&env, "stdout", "");
    let run = env.run(&["get", "--provider", "p", "-v"]);
    assert_eq!(run.token(), "after-stdout");
    assert_eq!(run.stdout.lines().count(), 1, "stdout must hold only the credential");
    assert!(run.stderr.contains("junk"), "plugin stdout goes to the log: {}", run.stderr);
    assert!(run.stderr.contains("stderr from the probe"));
}

#[test]
fn secrets_are_redacted_from_plugin_logs() {
    let env = UserEnv::new();
    probe_profile(&env, "log-secret", "");
    let run = env
        .credbroker(&["get", "--provider", "p", "--set", "secret=env:PROBE_SECRET", "-vv"])
        .env("PROBE_SECRET", "s3cr3t-value")
        .output()
        .map(crate::harness::Run::of)
        .unwrap();
    assert_eq!(run.token(), "logged");
    assert!(run.stderr.contains("the secret is [REDACTED]"), "{}", run.stderr);
    assert!(run.stderr.contains("minted [REDACTED]"), "{}", run.stderr);
    assert!(!run.stderr.contains("s3cr3t-value"), "{}", run.stderr);
}

#[test]
fn http_reaches_allowlisted_origins_only() {
    let stub = HttpStub::start(vec![
        ("/hello", Answer::ok("hello")),
        ("/redirect-in", Answer::redirect("/hello")),
        ("/redirect-out", Answer::redirect("http://127.0.0.1:1/elsewhere")),
    ]);
    let port = stub.port;
    let allowed = format!("http://localhost:{port}");
    let env = UserEnv::new();
    probe_profile(&env, "http", &format!("[profiles.p.grants]\nhttp = [{allowed:?}]"));
    let get = |url: &str, follow: bool| {
        env.run(&[
            "get",
            "--provider",
            "p",
            "--no-cache",
            "--set",
            &format!("url={url}"),
            "--set",
            &format!("follow={follow}"),
        ])
    };
    assert_eq!(get(&format!("{allowed}/hello"), false).token(), "200:hello");
    // Host names are case-insensitive: the same origin.
    assert_eq!(get(&format!("http://LocalHost:{port}/hello"), false).token(), "200:hello");
    assert_eq!(get(&format!("{allowed}/redirect-in"), true).token(), "200:hello");
    assert_eq!(get(&format!("{allowed}/redirect-in"), false).token(), "302:");

    let out = get(&format!("{allowed}/redirect-out"), true);
    assert!(
        out.error().contains("redirect refused: `http://127.0.0.1:1` is not in this plugin's allowlist"),
        "{}",
        out.stderr
    );
    for (url, expected) in [
        // The same machine by IP literal is not the allowlisted name.
        (
            format!("http://127.0.0.1:{port}/hello"),
            format!("`http://127.0.0.1:{port}` is not in this plugin's allowlist"),
        ),
        (format!("http://localhost:{}/hello", port + 1), "is not in this plugin's allowlist".to_string()),
        ("https://example.com/".to_string(), "`https://example.com:443` is not in this plugin's allowlist".to_string()),
        (format!("http://localhost:{port}@evil.example/"), "URLs with user info".to_string()),
        (format!("http://localhost.:{port}/hello"), "trailing dot".to_string()),
        // `literal:` keeps the host from reading the value as a file reference.
        ("literal:file:///etc/passwd".to_string(), "`file` URLs are not supported".to_string()),
    ] {
        let run = get(&url, false);
        assert!(run.error().contains(&expected), "{url}: {}", run.stderr);
    }
}

#[test]
fn files_are_readable_only_when_granted() {
    let env = UserEnv::new();
    let granted = env.home().join("granted.txt");
    std::fs::write(&granted, "granted-content\n").unwrap();
    probe_profile(&env, "file", &format!("[profiles.p.grants]\nfiles = [{:?}]", granted.display().to_string()));
    let read = |path: &str| env.run(&["get", "--provider", "p", "--no-cache", "--set", &format!("path={path}")]);
    assert_eq!(read(granted.to_str().unwrap()).token(), "granted-content");
    let denied = read("/etc/passwd");
    assert!(denied.error().contains("`/etc/passwd` is not granted to this plugin"), "{}", denied.stderr);
}

#[test]
fn prompting_needs_an_interactive_run() {
    let env = UserEnv::new();
    probe_profile(&env, "prompt", "");
    let run = env.run(&["get", "--provider", "p"]);
    assert!(run.error().contains("cannot ask the user: not running interactively"), "{}", run.stderr);
}

#[test]
fn an_endless_loop_hits_the_cpu_limit() {
    let env = UserEnv::new();
    probe_profile(&env, "loop", "[profiles.p.limits]\ncpu-ms = 300");
    // At the default verbosity, this one line is all the user sees.
    let run = Run::of(env.credbroker(&["get", "--provider", "p"]).env_remove("CREDBROKER_LOG").output().unwrap());
    let plugin = probe().display().to_string();
    assert_eq!(
        run.error().trim(),
        format!("credbroker: error: plugin `{plugin}` exceeded its CPU time limit of 300 ms")
    );
}

#[test]
fn waiting_is_not_cpu_time() {
    let env = UserEnv::new();
    probe_profile(&env, "sleep", "[profiles.p.limits]\ncpu-ms = 100");
    let run = env.run(&["get", "--provider", "p", "--set", "ms=600"]);
    assert_eq!(run.token(), "rested", "a plugin that sleeps 600 ms uses almost no CPU");
}

#[test]
fn growing_memory_hits_the_memory_limit() {
    let env = UserEnv::new();
    probe_profile(&env, "grow", "[profiles.p.limits]\nmemory-mib = 24");
    let run = env.run(&["get", "--provider", "p"]);
    assert!(run.error().ends_with("exceeded its memory limit of 24 MiB\n"), "{}", run.stderr);
}

#[test]
fn deep_recursion_is_a_clear_error() {
    let env = UserEnv::new();
    probe_profile(&env, "recurse", "");
    let run = env.run(&["get", "--provider", "p"]);
    assert!(run.error().contains("exhausted its stack (deep recursion)"), "{}", run.stderr);

    probe_profile(&env, "recurse-shadow", "");
    let run = env.run(&["get", "--provider", "p"]);
    assert!(run.error().contains("crashed: out-of-bounds memory access"), "{}", run.stderr);
}

#[test]
fn a_panic_shows_the_plugins_message() {
    let env = UserEnv::new();
    probe_profile(&env, "panic", "");
    let run = env.run(&["get", "--provider", "p"]);
    let error = run.error();
    assert!(error.contains("crashed: wasm trap: wasm `unreachable` instruction executed"), "{error}");
    assert!(error.contains("probe panicked on purpose"), "{error}");
}

#[test]
fn a_backend_that_never_answers_hits_the_time_limit() {
    let stub = HttpStub::start(vec![]);
    let env = UserEnv::new();
    probe_profile(
        &env,
        "http",
        &format!("[profiles.p.grants]\nhttp = [{:?}]\n[profiles.p.limits]\ntimeout-ms = 800", stub.origin()),
    );
    let run = env.run(&["get", "--provider", "p", "--set", &format!("url={}/hang", stub.origin())]);
    assert!(run.error().contains("did not finish within its time limit of 800 ms"), "{}", run.stderr);
}

#[test]
fn log_floods_are_cut_off() {
    let env = UserEnv::new();
    probe_profile(&env, "log-flood", "[profiles.p.limits]\nlog-bytes = 10000\ncpu-ms = 20000");
    let run = env.run(&["get", "--provider", "p", "-vvv"]);
    assert_eq!(run.token(), "after-flood");
    assert!(run.stderr.contains("further log lines and messages from this run are dropped"), "{}", &run.stderr[..500]);
    assert!(run.stderr.len() < 50_000, "stderr is {} bytes", run.stderr.len());
}

#[test]
fn components_that_break_the_contract_are_refused_before_running() {
    let env = UserEnv::new();
    let command = crate::harness::test_plugin("command");
    let run = env.run(&["get", "--plugin", command.to_str().unwrap()]);
    assert!(
        run.error().contains(
            "it does not implement the `provider` world: it must export `credbroker:plugin/credential-provider@0.1.3` \
             but exports nothing (this credbroker speaks credbroker:plugin@0.1.3)"
        ),
        "{}",
        run.stderr
    );

    let dir = env.home();
    std::fs::write(dir.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let run = env.run(&["get", "--plugin", dir.join("core.wasm").to_str().unwrap()]);
    assert!(run.error().contains("a core WebAssembly module, not a component"), "{}", run.stderr);

    std::fs::write(dir.join("text.wasm"), b"hello world").unwrap();
    let run = env.run(&["get", "--plugin", dir.join("text.wasm").to_str().unwrap()]);
    assert!(run.error().contains("not a WebAssembly file"), "{}", run.stderr);

    let bytes = std::fs::read(probe()).unwrap();
    std::fs::write(dir.join("truncated.wasm"), &bytes[..bytes.len() / 2]).unwrap();
    let run = env.run(&["get", "--plugin", dir.join("truncated.wasm").to_str().unwrap()]);
    assert!(run.error().contains("not a valid WebAssembly component"), "{}", run.stderr);
}

#[test]
fn compiled_plugins_are_cached_privately_and_verified() {
    let env = UserEnv::new();
    assert_eq!(env.run(&["get", "--provider", "static", "--no-cache", "--set", "token=a"]).token(), "a");
    let artifacts = env.cache_dir().join("artifacts");
    assert_eq!(std::fs::metadata(&artifacts).unwrap().permissions().mode() & 0o777, 0o700);
    let mut entries: Vec<_> = std::fs::read_dir(&artifacts).unwrap().flatten().map(|e| e.path()).collect();
    entries.sort();
    assert_eq!(entries.len(), 2, "an artifact and its checksum: {entries:?}");
    let artifact = &entries[0];
    assert!(artifact.to_string_lossy().ends_with(".cwasm"));
    assert_eq!(std::fs::metadata(artifact).unwrap().permissions().mode() & 0o777, 0o600);
    let written = std::fs::metadata(artifact).unwrap().modified().unwrap();

    // A second run loads the artifact instead of compiling again.
    assert_eq!(env.run(&["get", "--provider", "static", "--no-cache", "--set", "token=b"]).token(), "b");
    assert_eq!(std::fs::metadata(artifact).unwrap().modified().unwrap(), written);

    // A tampered artifact is never executed: it is recompiled.
    let mut bytes = std::fs::read(artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(artifact, &bytes).unwrap();
    let run = env.run(&["get", "--provider", "static", "--no-cache", "--set", "token=c"]);
    assert_eq!(run.token(), "c");
    assert!(
        run.stderr.contains("checksum mismatch (truncated, corrupted or tampered with); recompiling"),
        "{}",
        run.stderr
    );
    assert_ne!(std::fs::read(artifact).unwrap(), bytes, "the artifact is rewritten");

    // So is one that others could have written.
    std::fs::set_permissions(artifact, std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = env.run(&["get", "--provider", "static", "--no-cache", "--set", "token=d"]);
    assert_eq!(run.token(), "d");
    assert!(run.stderr.contains("not a private regular file of the current user"), "{}", run.stderr);
}
