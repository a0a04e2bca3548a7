//! The real kubectl (oldest and newest on the machine) running `credbroker get`
//! from a kubeconfig exec entry against a stand-in HTTPS API server.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::apiserver::ApiServer;
use crate::harness::kubectl::{self, Exec, VERSIONS};
use crate::harness::{Answer, HttpStub, Run, UserEnv, probe};

/// A profile `counted` whose token comes from `stub`'s `/token`: the stub's
/// hit count is the number of provider runs.
fn counted_profile(env: &UserEnv, stub: &HttpStub, expires_in: u32) {
    env.write_config(&format!(
        "[profiles.counted]\nplugin = {:?}\ncache-margin-seconds = 0\n[profiles.counted.settings]\nbehavior = \"http\"\nurl = \"{}/token\"\nexpires-in = \"{expires_in}\"\n[profiles.counted.grants]\nhttp = [{:?}]\n",
        probe().display().to_string(),
        stub.origin(),
        stub.origin()
    ));
}

#[test]
fn kubectl_authenticates_with_the_static_provider() {
    let env = UserEnv::new();
    let server = ApiServer::with_token("abc");
    for version in VERSIONS {
        for exec in [
            Exec::v1(&["get", "--provider", "static", "--set", "token=abc", "--no-cache"]),
            Exec::v1beta1(&["get", "--provider", "static", "--set", "token=abc", "--no-cache"]),
        ] {
            let config = kubectl::kubeconfig(&env, &server, &exec);
            let run = kubectl::run(&env, version, &config, &["get", "--raw", "/version"]);
            assert_eq!(run.code, Some(0), "kubectl {version} {}: {}", exec.api_version, run.stderr);
            assert!(run.stdout.contains("v1.33.0-credbroker-standin"), "{}", run.stdout);
        }
    }
    assert!(server.tokens_seen().iter().all(|t| t == "abc"), "{:?}", server.tokens_seen());
    assert_eq!(server.tokens_seen().len(), 4);
}

#[test]
fn kubectl_refuses_a_wrong_token_after_one_retry() {
    let env = UserEnv::new();
    let server = ApiServer::with_token("right");
    let config =
        kubectl::kubeconfig(&env, &server, &Exec::v1(&["get", "--provider", "static", "--set", "token=wrong"]));
    let run = kubectl::run(&env, "1.33", &config, &["get", "--raw", "/version"]);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("Unauthorized"), "{}", run.stderr);
}

#[test]
fn kubectl_shows_the_providers_error() {
    let env = UserEnv::new();
    let server = ApiServer::with_token("never");
    let plugin = probe().display().to_string();
    for version in VERSIONS {
        let config = kubectl::kubeconfig(
            &env,
            &server,
            &Exec::v1(&["get", "--plugin", &plugin, "--set", "behavior=fail", "--set", "message=no such user alice"]),
        );
        let run = kubectl::run(&env, version, &config, &["get", "--raw", "/version"]);
        assert_ne!(run.code, Some(0));
        assert!(
            run.stderr.contains(&format!("credbroker: error: plugin `{plugin}` failed: denied: no such user alice")),
            "kubectl {version}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("failed with exit code 1"), "kubectl {version}: {}", run.stderr);
    }
    assert!(server.tokens_seen().is_empty(), "no credential, no request with a token");
}

#[test]
fn kubectl_with_an_unknown_provider_lists_the_choices() {
    let env = UserEnv::new();
    let server = ApiServer::with_token("never");
    let config = kubectl::kubeconfig(&env, &server, &Exec::v1(&["get", "--provider", "corp-ldpa"]));
    let run = kubectl::run(&env, "1.33", &config, &["get", "--raw", "/version"]);
    assert_ne!(run.code, Some(0));
    assert!(
        run.stderr.contains("unknown provider `corp-ldpa`; profiles: none; plugins: aws-iam, ldap, oidc, static"),
        "{}",
        run.stderr
    );
}

#[test]
fn cluster_info_reaches_the_provider_through_kubectl() {
    let env = UserEnv::new();
    // The server accepts only a token built from what kubectl told the
    // provider about it: its URL, the extension config and the CA's size.
    let expected: Arc<std::sync::Mutex<String>> = Arc::default();
    let check = Arc::clone(&expected);
    let server = ApiServer::start(Arc::new(move |t| *check.lock().unwrap() == t));
    *expected.lock().unwrap() = format!("{}|{{\"audience\":\"prod\"}}|{}", server.url, server.ca_pem.len());
    let plugin = probe().display().to_string();
    for version in VERSIONS {
        let mut exec = Exec::v1(&["get", "--plugin", &plugin, "--set", "behavior=cluster", "--no-cache"]);
        exec.extension_config = Some(serde_json::json!({"audience": "prod"}));
        let config = kubectl::kubeconfig(&env, &server, &exec);
        let run = kubectl::run(&env, version, &config, &["get", "--raw", "/version"]);
        assert_eq!(run.code, Some(0), "kubectl {version}: {} (server saw {:?})", run.stderr, server.tokens_seen());
    }
}

#[test]
fn kubectl_runs_reuse_the_cached_credential_until_it_expires() {
    let stub = HttpStub::start(vec![("/token", Answer::ok("cached"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, 3);
    let server = ApiServer::with_token("200:cached");
    let config = kubectl::kubeconfig(&env, &server, &Exec::v1(&["get", "--provider", "counted"]));
    for version in VERSIONS {
        let run = kubectl::run(&env, version, &config, &["get", "--raw", "/version"]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    }
    assert_eq!(stub.hits("/token"), 1, "the second kubectl used the cached credential");
    std::thread::sleep(Duration::from_millis(3100));
    let run = kubectl::run(&env, "1.33", &config, &["get", "--raw", "/version"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(stub.hits("/token"), 2, "an expired credential makes the provider run again");
}

#[test]
fn parallel_kubectl_runs_log_in_once() {
    let stub = HttpStub::start(vec![("/token", Answer::ok("shared"))]);
    let env = UserEnv::new();
    counted_profile(&env, &stub, 3600);
    let server = ApiServer::with_token("200:shared");
    let config = kubectl::kubeconfig(&env, &server, &Exec::v1(&["get", "--provider", "counted"]));
    let children: Vec<_> = (0..12)
        .map(|i| {
            kubectl::command(&env, VERSIONS[i % 2], &config, &["get", "--raw", "/version"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let run = Run::of(child.wait_with_output().unwrap());
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    }
    assert_eq!(stub.hits("/token"), 1, "12 kubectl processes, one login");
}
