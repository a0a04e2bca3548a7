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
fn the_env_grant_passes_only_named_variables_as_secrets() {
    let env = UserEnv::new();
    probe_profile(&env, "env", "[profiles.p.grants]\nenv = [\"PROBE_*\", \"HOME\"]");
    let run = env
        .credbroker(&["get", "--provider", "p", "--no-cache", "-v"])
        .env("PROBE_KEY", "probe-key-value")
        .env("PROBE_REGION", "eu-west-1")
        .env("PROBEX", "not-granted")
        .env("OTHER_SECRET", "not-granted-either")
        .output()
        .map(Run::of)
        .unwrap();
    let home = env.home().display().to_string();
    assert_eq!(run.token(), format!("HOME={home},PROBE_KEY=probe-key-value,PROBE_REGION=eu-west-1"));
    // Every value is a secret of the run: the plugin's log shows none of them.
    assert!(
        run.stderr.contains("my environment: HOME=[REDACTED] PROBE_KEY=[REDACTED] PROBE_REGION=[REDACTED]"),
        "{}",
        run.stderr
    );

    for (grant, error) in [
        ("[\"*\"]", "grants.env: `*` would pass the whole environment"),
        ("[\"AWS-KEY\"]", "grants.env: `AWS-KEY` is not a variable name or a prefix ending in `*`"),
    ] {
        probe_profile(&env, "env", &format!("[profiles.p.grants]\nenv = {grant}"));
        let refused = env.run(&["get", "--provider", "p", "--no-cache"]);
        assert!(refused.error().contains(error), "{grant}: {}", refused.stderr);
    }
    probe_profile(&env, "env", "[profiles.p.grants]\nenv = [\"PROBE_*\"]\n[profiles.p.limits]\nmax-call-bytes = 20");
    let over = env.credbroker(&["get", "--provider", "p", "--no-cache"]).env("PROBE_KEY", "a-value-too-long").output();
    let over = Run::of(over.unwrap());
    assert!(
        over.error().contains(
            "grants.env: the granted variables hold 25 bytes, over the per-call limit (max-call-bytes) of 20 bytes"
        ),
        "{}",
        over.stderr
    );
}

#[test]
fn a_question_nobody_answers_ends_at_the_time_limit() {
    let env = UserEnv::new();
    probe_profile(&env, "prompt", "[profiles.p.limits]\ntimeout-ms = 1500");
    let get = env.credbroker(&["get", "--provider", "p", "--no-cache"]);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(crate::harness::terminal::on_terminal(&get, |_, _| None));
    });
    // The user walked away: the run ends with its limit, the process with it.
    let screen = finished.recv_timeout(std::time::Duration::from_secs(30)).expect("credbroker get hung on the prompt");
    assert_ne!(screen.code, Some(0));
    assert!(screen.stderr.contains("Your name?"), "{}", screen.stderr);
    assert!(
        screen.stderr.contains("nobody answered the question in time")
            || screen.stderr.contains("time limit of 1500 ms"),
        "{}",
        screen.stderr
    );
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
            "it does not implement the `provider` world: it must export `credbroker:plugin/credential-provider@0.1.5` \
             but exports nothing (this credbroker speaks credbroker:plugin@0.1.5)"
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
        run.stderr
            .contains("checksum mismatch (truncated, corrupted, tampered with, or another plugin's); recompiling"),
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

/// The compiled artifacts in `env`'s cache.
fn cached_artifacts(env: &UserEnv) -> Vec<std::path::PathBuf> {
    let dir = env.cache_dir().join("artifacts");
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "cwasm")).collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

#[test]
fn an_artifact_copied_under_another_plugins_name_is_recompiled_not_run() {
    let env = UserEnv::new();
    assert_eq!(env.run(&["get", "--provider", "static", "--no-cache", "--set", "token=from-a"]).token(), "from-a");
    let a = cached_artifacts(&env);
    assert_eq!(a.len(), 1, "{a:?}");
    probe_profile(&env, "echo", "");
    let b_run = || env.run(&["get", "--provider", "p", "--no-cache", "--set", "value=from-b"]);
    assert_eq!(b_run().token(), "from-b");
    let b: Vec<_> = cached_artifacts(&env).into_iter().filter(|p| !a.contains(p)).collect();
    assert_eq!(b.len(), 1, "{b:?}");
    let (a, b) = (&a[0], &b[0]);
    let sum = |p: &std::path::Path| p.with_file_name(format!("{}.sum", p.file_name().unwrap().to_str().unwrap()));

    // Plugin A's artifact and checksum under plugin B's name: the pin and
    // signature were checked against B's .wasm, so B's code must be what runs.
    std::fs::copy(a, b).unwrap();
    std::fs::copy(sum(a), sum(b)).unwrap();
    let run = b_run();
    assert_eq!(run.token(), "from-b", "{}", run.stderr);
    assert!(
        run.stderr.contains("checksum mismatch (truncated, corrupted, tampered with, or another plugin's)"),
        "{}",
        run.stderr
    );
    assert_ne!(std::fs::read(b).unwrap(), std::fs::read(a).unwrap(), "B's artifact is compiled anew");
    let run = b_run();
    assert_eq!(run.token(), "from-b");
    assert!(!run.stderr.contains("recompiling"), "and then used: {}", run.stderr);
}

/// A valid component exporting one (lifted, empty) function under `exports`
/// names, so implementing no world, with `padding` bytes of custom section.
fn component_exporting(exports: u32, padding: usize) -> Vec<u8> {
    use wasm_encoder::{
        Alias, CanonicalFunctionSection, CanonicalOption, CodeSection, Component, ComponentAliasSection,
        ComponentExportKind, ComponentExportSection, ComponentTypeSection, ComponentValType, CustomSection, ExportKind,
        ExportSection, Function, FunctionSection, InstanceSection, Module, ModuleArg, ModuleSection, TypeSection,
        ValType,
    };
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([] as [ValType; 0], [] as [ValType; 0]);
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut module_exports = ExportSection::new();
    module_exports.export("f", ExportKind::Func, 0);
    module.section(&module_exports);
    let mut code = CodeSection::new();
    let mut body = Function::new([]);
    body.instructions().end();
    code.function(&body);
    module.section(&code);

    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    let mut instances = InstanceSection::new();
    instances.instantiate(0, [] as [(&str, ModuleArg); 0]);
    component.section(&instances);
    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::CoreInstanceExport { instance: 0, kind: ExportKind::Func, name: "f" });
    component.section(&aliases);
    let mut component_types = ComponentTypeSection::new();
    component_types.function().params([] as [(&str, ComponentValType); 0]).result(None);
    component.section(&component_types);
    let mut lifted = CanonicalFunctionSection::new();
    lifted.lift(0, 0, [] as [CanonicalOption; 0]);
    component.section(&lifted);
    let mut section = ComponentExportSection::new();
    for i in 0..exports {
        section.export(format!("e{i}"), ComponentExportKind::Func, 0, None);
    }
    component.section(&section);
    if padding > 0 {
        component.section(&CustomSection { name: "padding".into(), data: vec![0u8; padding].into() });
    }
    component.finish()
}

#[test]
fn oversized_components_are_refused_before_compiling_and_errors_stay_short() {
    let env = UserEnv::new();
    let dir = env.home();
    let write = |name: &str, wasm: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, wasm).unwrap();
        path.display().to_string()
    };

    // 100,000 exports: refused from the section headers, nothing compiled.
    let exports = write("exports.wasm", component_exporting(100_000, 0));
    let run = env.run(&["get", "--plugin", &exports]);
    let error = run.error();
    assert!(
        error
            .contains("the component has more than 1000 component imports and exports; a plugin may have at most 1000"),
        "{error}"
    );
    assert!(error.len() < 1024, "{} bytes of error", error.len());
    assert!(cached_artifacts(&env).is_empty(), "nothing was compiled");
    let inspect = env.run(&["plugin", "inspect", &exports]);
    assert_eq!(inspect.code, Some(1));
    assert!(inspect.stdout.contains("more than 1000 component imports and exports"), "{}", inspect.stdout);
    assert!(inspect.stdout.len() + inspect.stderr.len() < 2048, "{}", inspect.stdout);

    // Over 64 MiB.
    let large = write("large.wasm", component_exporting(1, 65 * 1024 * 1024));
    let error = env.run(&["get", "--plugin", &large]).error().to_string();
    assert!(error.contains("bytes; the limit is 67108864 bytes (64 MiB)"), "{error}");

    // Within the limits but implementing no world: a few exports are named, not all.
    let many = write("many.wasm", component_exporting(900, 0));
    let error = env.run(&["get", "--plugin", &many]).error().to_string();
    assert!(error.contains("does not implement the `provider` world"), "{error}");
    assert!(error.contains("exports e0, e1, e2, e3, e4, e5, e6, e7 and 892 more"), "{error}");
    assert!(error.len() < 1024, "{} bytes of error", error.len());
}
