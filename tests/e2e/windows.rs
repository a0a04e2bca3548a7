//! The Windows build: `credbroker.exe`, cross-built with mingw-w64 and run
//! under wine, does what the Linux build does for a laptop: the exec
//! protocol, the credential cache (written, reused, locked across parallel
//! runs), plugins by path from their precompiled artifacts, the Credential
//! Manager as the keyring, clear errors, and the real kubectl driving it.

use std::process::Stdio;

use crate::harness::apiserver::ApiServer;
use crate::harness::kubectl::{self, Exec};
use crate::harness::wine::windows_path;
use crate::harness::{Answer, HttpStub, Run, UserEnv, files_holding, files_under, probe};

const V1_EXEC_INFO: &str =
    r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#;

/// A profile `name` whose provider (the probe plugin, by its Windows path)
/// fetches its token from `stub`'s `/token`, so the stub's hit count is the
/// number of provider runs.
fn counted_profile(env: &UserEnv, name: &str, stub: &HttpStub, storage: &str) {
    env.write_config(&format!(
        "[profiles.{name}]\nplugin = {:?}\nstorage = {storage:?}\n[profiles.{name}.settings]\nbehavior = \"http\"\nurl = \"{}/token\"\nexpires-in = \"3600\"\n[profiles.{name}.grants]\nhttp = [{:?}]\n",
        windows_path(&probe()),
        stub.origin(),
        stub.origin()
    ));
}

#[test]
fn the_windows_binary_prints_the_exec_credential_kubectl_asked_for() {
    let env = UserEnv::new();
    let run = env.run_windows(&["get", "--provider", "static", "--set", "token=abc"]);
    let credential = run.credential();
    assert_eq!(credential["kind"], "ExecCredential");
    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1beta1");
    assert_eq!(credential["status"]["token"], "abc");
    assert_eq!(run.stderr, "", "a clean run says nothing");

    let v1 = Run::of(
        env.windows(&["get", "--provider", "static", "--set", "token=abc"])
            .env("KUBERNETES_EXEC_INFO", V1_EXEC_INFO)
            .output()
            .unwrap(),
    );
    assert_eq!(v1.credential()["apiVersion"], "client.authentication.k8s.io/v1");
}

#[test]
fn the_windows_cache_is_written_reused_and_private_and_plugins_run_precompiled() {
    let stub = HttpStub::start(vec![("/token", Answer::ok("fresh"))]);
    let env = UserEnv::new();
    counted_profile(&env, "wincounted", &stub, "file");
    let first = env.run_windows(&["get", "--provider", "wincounted"]);
    assert_eq!(first.token(), "200:fresh");
    let second = env.run_windows(&["get", "--provider", "wincounted"]);
    assert_eq!(second.credential(), first.credential());
    assert_eq!(stub.hits("/token"), 1, "the second run is served from the cache");
    let entries: Vec<_> = files_under(&env.cache_dir().join("credentials"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");

    // The plugin (by path) was compiled once and now runs from its artifact.
    let artifacts: Vec<_> = files_under(&env.cache_dir().join("artifacts"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let rerun = Run::of(
        env.windows(&["get", "--provider", "wincounted", "--no-cache"])
            .env("CREDBROKER_LOG", "debug")
            .output()
            .unwrap(),
    );
    assert_eq!(rerun.token(), "200:fresh");
    assert!(!rerun.stderr.contains("compiled plugin"), "the artifact was not used: {}", rerun.stderr);
    assert!(!rerun.stderr.contains("ignoring cached artifact"), "{}", rerun.stderr);
    assert_eq!(stub.hits("/token"), 2);

    // doctor finds the directories private (the access list wine reports).
    let doctor = env.run_windows(&["doctor", "--provider", "wincounted"]);
    for what in ["compiled plugins:", "cached credentials:"] {
        let line = doctor.stdout.lines().find(|l| l.contains(what)).unwrap_or_default();
        assert!(line.ends_with("(private)"), "{what}: {}\n{}", doctor.stdout, doctor.stderr);
    }
}

#[test]
fn parallel_windows_runs_log_in_once() {
    let stub = HttpStub::start(vec![("/token", Answer::ok("shared"))]);
    let env = UserEnv::new();
    counted_profile(&env, "winparallel", &stub, "file");
    let children: Vec<_> = (0..8)
        .map(|_| {
            env.windows(&["get", "--provider", "winparallel"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<Run> = children.into_iter().map(|c| Run::of(c.wait_with_output().unwrap())).collect();
    let first = runs[0].credential();
    for run in &runs {
        assert_eq!(run.credential(), first, "every process prints the same credential: {}", run.stderr);
    }
    assert_eq!(stub.hits("/token"), 1, "the provider ran once");
}

#[test]
fn the_credential_manager_keeps_credentials_off_disk_and_logout_removes_them() {
    // Longer than one Credential Manager item holds (2,560 bytes).
    let long = "x".repeat(7000);
    let stub = HttpStub::start(vec![("/token", Answer::ok(&long))]);
    let env = UserEnv::new();
    // The prefix's Credential Manager is shared: a profile name of its own.
    let profile = format!("winkeyring{}", std::process::id());
    counted_profile(&env, &profile, &stub, "keyring");
    let first = env.run_windows(&["get", "--provider", &profile]);
    assert_eq!(first.token(), format!("200:{long}"), "{}", first.stderr);
    let second = env.run_windows(&["get", "--provider", &profile]);
    assert_eq!(second.token(), first.token());
    assert_eq!(stub.hits("/token"), 1, "the second run is served from the Credential Manager");
    let on_disk = files_holding(env.home(), &long[..64]);
    assert!(on_disk.is_empty(), "a secret on disk with storage = keyring: {on_disk:?}");

    let logout = env.run_windows(&["logout", "--provider", &profile]);
    assert_eq!(logout.code, Some(0), "{}", logout.stderr);
    assert_eq!(logout.stdout, format!("logged out of `{profile}`:\n  removed cached credentials: 1 keyring item\n"));
    env.run_windows(&["get", "--provider", &profile]).credential();
    assert_eq!(stub.hits("/token"), 2, "after logout the provider runs again");
    env.run_windows(&["logout", "--provider", &profile]);
}

#[test]
fn windows_errors_are_clear() {
    let env = UserEnv::new();
    env.write_config("[profiles.corp-ldap]\nplugin = \"static\"\n");
    let unknown = env.run_windows(&["get", "--provider", "nope"]);
    assert_eq!(unknown.code, Some(1));
    assert!(
        unknown
            .error()
            .trim()
            .starts_with("credbroker: error: unknown provider `nope`; profiles: corp-ldap; plugins: "),
        "{}",
        unknown.stderr
    );
    assert_eq!(unknown.stdout, "", "nothing on the stdout kubectl reads");

    env.write_config("[profiles.a]\nplugin = \"static\"\nlimits = { cpu-ms = \"fast\" }\n");
    let broken = env.run_windows(&["get", "--provider", "a"]);
    assert_eq!(broken.code, Some(1));
    assert!(broken.error().contains("invalid configuration"), "{}", broken.stderr);
    assert!(broken.error().contains("line 3"), "{}", broken.stderr);

    env.write_config("");
    let missing = env.run_windows(&["get", "--provider", "static"]);
    assert_eq!(missing.code, Some(1));
    assert!(missing.error().contains("setting `token` is required"), "{}", missing.stderr);

    let serve = env.run_windows(&["serve"]);
    assert_eq!(serve.code, Some(1));
    assert!(
        serve.error().contains("`credbroker serve` (the webhook) runs on Linux, in pods; this build for windows"),
        "{}",
        serve.stderr
    );
}

/// The host's own unit tests, built for Windows: among them those of the
/// Windows halves (private directories by access list, opens beneath a
/// directory, the Credential Manager's item names and parts).
#[test]
fn the_host_unit_tests_pass_on_windows() {
    let run = crate::harness::wine::run_host_unit_tests();
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    for windows_test in
        ["fsutil::windows::tests::private_dirs_are_created_checked_and_stay_private", "credential_manager::tests"]
    {
        assert!(run.stdout.contains(windows_test), "{windows_test} did not run:\n{}", run.stdout);
    }
    assert!(run.stdout.contains("test result: ok."), "{}", run.stdout);
}

#[test]
fn kubectl_authenticates_with_the_windows_binary() {
    let env = UserEnv::new();
    let server = ApiServer::with_token("abc");
    let exec = Exec::windows(&env, &["get", "--provider", "static", "--set", "token=abc", "--set", "expires-in=3600"]);
    let config = kubectl::kubeconfig(&env, &server, &exec);
    for _ in 0..2 {
        let run = kubectl::run(&env, "1.33", &config, &["get", "--raw", "/version"]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert!(run.stdout.contains("v1.33.0-credbroker-standin"), "{}", run.stdout);
    }
    assert_eq!(server.tokens_seen(), vec!["abc", "abc"]);
}
