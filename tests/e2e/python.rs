//! A provider written in Python (plugins-python/token-service), built with
//! componentize-py against the same WIT, run through `credbroker get`.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::harness::{Answer, HttpStub, UserEnv, root};

/// The component, built once per test run by plugins-python/build.
fn token_service() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = root().join("target/python-plugins");
            let status = std::process::Command::new(root().join("plugins-python/build"))
                .arg(&out)
                .status()
                .expect("running plugins-python/build");
            assert!(status.success(), "building the Python plugin failed (is componentize-py installed?)");
            out.join("token-service.wasm")
        })
        .clone()
}

/// `credbroker get` of the Python provider asking `url` as `ada`, with the API
/// key `api_key` (a setting, e.g. `env:NAME`) and `extra` arguments.
fn command(env: &UserEnv, url: &str, api_key: &str, extra: &[&str]) -> std::process::Command {
    let plugin = token_service();
    let url = format!("url={url}");
    let api_key = format!("api-key={api_key}");
    let mut args =
        vec!["get", "--plugin", plugin.to_str().unwrap(), "--set", &url, "--set", "user=ada", "--set", &api_key];
    args.extend_from_slice(extra);
    env.credbroker(&args)
}

fn get(env: &UserEnv, service: &HttpStub, key: &str) -> crate::harness::Run {
    let origin = service.origin();
    let out = command(env, &origin, "env:TOKEN_SERVICE_KEY", &["--allow-http", &origin, "-v"])
        .env("TOKEN_SERVICE_KEY", key)
        .output()
        .unwrap();
    crate::harness::Run::of(out)
}

#[test]
fn the_python_provider_gets_a_token_through_the_host() {
    let env = UserEnv::new();
    let service = HttpStub::start(vec![("/v1/token", Answer::ok(r#"{"token":"svc-ada-7f3a9c","expiresIn":600}"#))]);
    let run = get(&env, &service, "k3y-secret-value");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.token(), "svc-ada-7f3a9c");
    assert!(run.credential()["status"]["expirationTimestamp"].is_string());
    assert!(run.stderr.contains("token for `ada`, valid 600 s"), "the Python log reaches the host's: {}", run.stderr);
    assert!(!run.stderr.contains("k3y-secret-value") && !run.stderr.contains("svc-ada-7f3a9c"), "{}", run.stderr);
    assert_eq!(service.hits("/v1/token"), 1);

    // Cached like any other provider's credential.
    let again = get(&env, &service, "k3y-secret-value");
    assert_eq!(again.token(), "svc-ada-7f3a9c");
    assert_eq!(service.hits("/v1/token"), 1);
}

#[test]
fn the_python_provider_reports_errors_the_host_understands() {
    let env = UserEnv::new();
    let refused = HttpStub::start(vec![(
        "/v1/token",
        Answer { status: 401, headers: Vec::new(), body: String::new(), hang_first: false },
    )]);
    let run = get(&env, &refused, "wrong");
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.is_empty());
    assert!(run.error().contains("denied: the token service refused the API key of `ada`"), "{}", run.stderr);

    // Its sandbox holds: an origin it was not granted is refused by the host.
    let out = command(&env, "http://127.0.0.1:9", "x", &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach the token service: ") && stderr.contains("not in this plugin's allowlist"),
        "{stderr}"
    );
}
