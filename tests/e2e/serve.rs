//! `credbroker serve` as kube-apiserver meets it: TokenReviews over mTLS, both
//! API versions, audiences, bad requests, hostile validators, hot reload and
//! metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::json;

use crate::harness::webhook::{Webhook, client, plain_client, review_body};
use crate::harness::{UserEnv, probe};

/// A token-file validator named `tokens` reading `tokens.csv` in the user's home.
fn token_file_validator(env: &UserEnv, extra: &str) -> String {
    let csv = env.home().join("tokens.csv");
    if !csv.exists() {
        std::fs::write(&csv, "tok-alice,alice,1001,\"devs,ops\"\ntok-bob,bob,1002\n").unwrap();
    }
    format!(
        "[[validators]]\nname = \"tokens\"\nplugin = \"token-file\"\n{extra}\n[validators.settings]\npath = {csv:?}\n[validators.grants]\nfiles = [{csv:?}]\n",
        csv = csv.display().to_string()
    )
}

/// A probe validator named `name` with `behavior`, for tokens with `prefix`.
fn probe_validator(name: &str, behavior: &str, prefix: &str, limits: &str) -> String {
    format!(
        "[[validators]]\nname = {name:?}\nplugin = {:?}\ntoken-prefix = {prefix:?}\n[validators.settings]\nbehavior = {behavior:?}\nvalue = \"v\"\n[validators.limits]\n{limits}\n",
        probe().display().to_string()
    )
}

#[test]
fn reviews_authenticate_in_the_version_asked() {
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &token_file_validator(&env, ""));
    for version in ["v1", "v1beta1"] {
        let (status, answer) = webhook.review(version, "tok-alice", &[]);
        assert_eq!(status, 200);
        assert_eq!(
            answer,
            json!({
                "apiVersion": format!("authentication.k8s.io/{version}"),
                "kind": "TokenReview",
                "status": {
                    "authenticated": true,
                    "user": {"username": "alice", "uid": "1001", "groups": ["devs", "ops"]},
                },
            })
        );
    }
}

#[test]
fn a_denial_is_a_cacheable_200() {
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &token_file_validator(&env, ""));
    let (status, answer) = webhook.review("v1", "tok-mallory", &[]);
    assert_eq!(status, 200);
    assert_eq!(answer["status"]["authenticated"], false);
    assert_eq!(answer["status"]["error"], "tokens: unknown token");
    assert!(answer["status"].get("user").is_none());
    assert!(!answer.to_string().contains("tok-mallory"), "the token is never echoed");
}

#[test]
fn audiences_are_intersected() {
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &token_file_validator(&env, "audiences = [\"api\", \"vault\"]"));
    let (_, answer) = webhook.review("v1", "tok-bob", &["vault", "other"]);
    assert_eq!(answer["status"]["authenticated"], true);
    assert_eq!(answer["status"]["audiences"], json!(["vault"]));
    let (status, answer) = webhook.review("v1", "tok-bob", &["other"]);
    assert_eq!(status, 200);
    assert_eq!(answer["status"]["authenticated"], false);
    assert_eq!(answer["status"]["error"], "tokens: the token is not valid for the requested audiences");
    let (_, answer) = webhook.review("v1", "tok-bob", &[]);
    assert_eq!(answer["status"]["audiences"], json!(["api", "vault"]));
}

#[test]
fn clients_without_the_right_certificate_are_refused() {
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &token_file_validator(&env, ""));
    let body = review_body("v1", "tok-alice", &[]);
    let anonymous = client(&webhook.server_ca.cert_pem, None);
    assert!(anonymous.post(format!("{}/authenticate", webhook.url)).body(body.clone()).send().is_err());
    let stranger = crate::harness::pki::TestCa::new("someone else").client("kube-apiserver", &[]);
    let impostor = client(&webhook.server_ca.cert_pem, Some(&stranger));
    assert!(impostor.post(format!("{}/authenticate", webhook.url)).body(body).send().is_err());
    assert_eq!(webhook.review("v1", "tok-alice", &[]).0, 200, "the real apiserver still gets in");
}

#[test]
fn bad_requests_get_well_formed_answers() {
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &token_file_validator(&env, ""));
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "the body is not a TokenReview"),
        (
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SubjectAccessReview"}"#.to_vec(),
            400,
            "kind `SubjectAccessReview` is not TokenReview",
        ),
        (
            br#"{"apiVersion":"authentication.k8s.io/v9","kind":"TokenReview"}"#.to_vec(),
            400,
            "apiVersion `authentication.k8s.io/v9`",
        ),
        (b"\xff\xfe\xfd".to_vec(), 400, "not UTF-8"),
        (review_body("v1", "", &[]), 200, "the token is empty"),
        (
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{}}"#.to_vec(),
            200,
            "the token is empty",
        ),
        (vec![b' '; 2 * 1024 * 1024], 413, "the body is over 1048576 bytes"),
    ];
    for (body, status, error) in cases {
        let (got, answer) = webhook.post(body);
        assert_eq!(got, status, "{answer}");
        assert_eq!(answer["kind"], "TokenReview");
        assert_eq!(answer["status"]["authenticated"], false);
        assert!(answer["status"]["error"].as_str().unwrap().contains(error), "{answer}");
    }
    let metrics = webhook.metrics();
    assert!(metrics.contains(r#"credbroker_http_requests_total{path="/authenticate",code="400"} 4"#), "{metrics}");
    assert!(metrics.contains(r#"credbroker_http_requests_total{path="/authenticate",code="413"} 1"#), "{metrics}");
}

#[test]
fn hostile_validators_do_not_stop_the_others() {
    let env = UserEnv::new();
    let validators = [
        probe_validator("looper", "loop", "loop-", "cpu-ms = 200"),
        probe_validator("crasher", "panic", "panic-", ""),
        probe_validator("down", "unavailable", "down-", ""),
        token_file_validator(&env, ""),
    ]
    .join("\n");
    let webhook = Arc::new(Webhook::start(&env, &validators));
    let attacking = Arc::new(AtomicBool::new(true));
    let attackers: Vec<_> = ["loop-1", "panic-1"]
        .into_iter()
        .map(|token| {
            let webhook = Arc::clone(&webhook);
            let attacking = Arc::clone(&attacking);
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while attacking.load(Ordering::SeqCst) {
                    answers.push(webhook.review("v1", token, &[]));
                }
                answers
            })
        })
        .collect();
    for _ in 0..30 {
        let (status, answer) = webhook.review("v1", "tok-alice", &[]);
        assert_eq!(status, 200);
        assert_eq!(answer["status"]["user"]["username"], "alice");
    }
    attacking.store(false, Ordering::SeqCst);
    for attacker in attackers {
        for (status, answer) in attacker.join().unwrap() {
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["status"]["authenticated"], false);
            let error = answer["status"]["error"].as_str().unwrap();
            assert!(error.contains("exceeded its CPU time limit of 200 ms") || error.contains("crashed"), "{error}");
        }
    }
    // A validator whose backend is down: the apiserver should retry (503).
    let (status, answer) = webhook.review("v1", "down-1", &[]);
    assert_eq!(status, 503);
    assert!(answer["status"]["error"].as_str().unwrap().contains("backend is down"));
    let metrics = webhook.metrics();
    assert!(metrics.contains(r#"credbroker_plugin_failures_total{validator="looper",kind="cpu_limit"}"#), "{metrics}");
    assert!(metrics.contains(r#"credbroker_plugin_failures_total{validator="crasher",kind="trap"}"#), "{metrics}");
    assert!(webhook.metric(r#"credbroker_reviews_total{validator="tokens",outcome="authenticated"}"#) >= 1.0);
    assert!(webhook.metric(r#"credbroker_reviews_total{validator="",outcome="transient"}"#) >= 1.0);
}

#[test]
fn answers_are_cached_briefly() {
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &token_file_validator(&env, ""));
    for _ in 0..3 {
        assert_eq!(webhook.review("v1", "tok-alice", &[]).1["status"]["authenticated"], true);
    }
    assert_eq!(webhook.metric(r#"credbroker_review_cache_total{result="hit"}"#), 2.0);
    assert_eq!(webhook.metric(r#"credbroker_review_cache_total{result="miss"}"#), 1.0);
}

#[test]
fn a_reload_under_load_fails_no_request() {
    let env = UserEnv::new();
    let webhook = Arc::new(Webhook::start(
        &env,
        &format!("[cache]\npositive-ttl-seconds = 0\nnegative-ttl-seconds = 0\n{}", token_file_validator(&env, "")),
    ));
    let running = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let webhook = Arc::clone(&webhook);
            let running = Arc::clone(&running);
            let sent = Arc::clone(&sent);
            std::thread::spawn(move || {
                while running.load(Ordering::SeqCst) {
                    let (status, answer) = webhook.review("v1", "tok-alice", &[]);
                    assert_eq!(status, 200, "{answer}");
                    assert_eq!(answer["status"]["user"]["username"], "alice", "{answer}");
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // Swap in a configuration with a second validator ahead of the first.
    webhook.rewrite(&format!(
        "[cache]\npositive-ttl-seconds = 0\nnegative-ttl-seconds = 0\n{}\n{}",
        probe_validator("echo", "echo-token", "ok-", ""),
        token_file_validator(&env, "")
    ));
    webhook.wait_for("the reload", || webhook.metric(r#"credbroker_reloads_total{result="success"}"#) >= 1.0);
    let (_, answer) = webhook.review("v1", "ok-carol", &[]);
    assert_eq!(answer["status"]["user"]["username"], "carol", "the new validator answers");

    // A broken configuration is refused; the old one keeps serving.
    webhook.rewrite("[[validators]]\nname = \"broken\"\nplugin = \"no-such-plugin\"\n");
    webhook.wait_for("the failed reload", || webhook.metric(r#"credbroker_reloads_total{result="failure"}"#) >= 1.0);
    webhook.wait_for("the log line", || {
        webhook.log().contains("the new configuration is broken; the previous one keeps serving")
    });
    let (_, answer) = webhook.review("v1", "ok-dave", &[]);
    assert_eq!(answer["status"]["user"]["username"], "dave");

    running.store(false, Ordering::SeqCst);
    for worker in load {
        worker.join().expect("no request failed");
    }
    assert!(sent.load(Ordering::SeqCst) > 20, "the load kept flowing: {}", sent.load(Ordering::SeqCst));
    assert_eq!(webhook.metric("credbroker_validators"), 2.0);
}

#[test]
fn a_rotated_certificate_is_picked_up() {
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &token_file_validator(&env, ""));
    let new_ca = crate::harness::pki::TestCa::new("rotated server CA");
    let new_cert = new_ca.server();
    let trusts_new = client(&new_ca.cert_pem, Some(&webhook.apiserver_cert));
    let body = review_body("v1", "tok-alice", &[]);
    assert!(trusts_new.post(format!("{}/authenticate", webhook.url)).body(body.clone()).send().is_err());
    std::fs::write(webhook.dir.join("tls.key.new"), &new_cert.key_pem).unwrap();
    std::fs::write(webhook.dir.join("tls.crt.new"), &new_cert.cert_pem).unwrap();
    std::fs::rename(webhook.dir.join("tls.key.new"), webhook.dir.join("tls.key")).unwrap();
    std::fs::rename(webhook.dir.join("tls.crt.new"), webhook.dir.join("tls.crt")).unwrap();
    webhook.wait_for("the new certificate", || {
        trusts_new.post(format!("{}/authenticate", webhook.url)).body(body.clone()).send().is_ok()
    });
    webhook.wait_for("the log line", || webhook.log().contains("reloaded the TLS certificate"));
}

#[test]
fn health_and_shutdown() {
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &token_file_validator(&env, ""));
    let http = webhook.client();
    assert_eq!(http.get(format!("{}/healthz", webhook.url)).send().unwrap().status(), 200);
    assert_eq!(http.get(format!("{}/readyz", webhook.url)).send().unwrap().status(), 200);
    assert_eq!(http.get(format!("{}/authenticate", webhook.url)).send().unwrap().status(), 405);
    assert_eq!(webhook.terminate(), Some(0), "SIGTERM drains and exits cleanly");
}

#[test]
fn the_apiserver_config_points_at_the_webhook() {
    let env = UserEnv::new();
    let dir = env.home();
    std::fs::write(
        dir.join("serve.toml"),
        format!("[server]\ninsecure-plain-http = true\n{}", token_file_validator(&env, "")),
    )
    .unwrap();
    let run = env.run(&[
        "serve",
        "--config",
        dir.join("serve.toml").to_str().unwrap(),
        "--print-apiserver-config",
        "--url",
        "https://credbroker.kube-system.svc:8443",
        "--ca-file",
        "/etc/credbroker/ca.crt",
        "--client-cert",
        "/etc/kubernetes/pki/credbroker-client.crt",
        "--client-key",
        "/etc/kubernetes/pki/credbroker-client.key",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let config: serde_json::Value = serde_yaml_ng::from_str(&run.stdout).unwrap();
    let cluster = &config["clusters"][0]["cluster"];
    assert_eq!(cluster["server"], "https://credbroker.kube-system.svc:8443/authenticate");
    assert_eq!(cluster["certificate-authority"], "/etc/credbroker/ca.crt");
    let user = &config["users"][0]["user"];
    assert_eq!(user["client-certificate"], "/etc/kubernetes/pki/credbroker-client.crt");
    assert_eq!(user["client-key"], "/etc/kubernetes/pki/credbroker-client.key");
    assert_eq!(config["current-context"], "webhook");
    assert_eq!(config["contexts"][0]["context"]["user"], "kube-apiserver");
}

#[test]
fn kubectl_reaches_a_cluster_whose_apiserver_asks_credbroker() {
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &token_file_validator(&env, ""));
    let (apiserver, users) = crate::harness::apiserver::ApiServer::with_webhook(&webhook);
    let config = crate::harness::kubectl::kubeconfig(
        &env,
        &apiserver,
        &crate::harness::kubectl::Exec::v1(&["get", "--provider", "static", "--set", "token=tok-alice"]),
    );
    let run = crate::harness::kubectl::run(&env, "1.33", &config, &["get", "--raw", "/version"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(users.lock().unwrap().as_slice(), ["alice"]);

    let config = crate::harness::kubectl::kubeconfig(
        &env,
        &apiserver,
        &crate::harness::kubectl::Exec::v1(&["get", "--provider", "static", "--set", "token=tok-unknown"]),
    );
    let run = crate::harness::kubectl::run(&env, "1.33", &config, &["get", "--raw", "/version"]);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("Unauthorized"), "{}", run.stderr);
}

/// A probe validator whose `validator-setup` does `setup` (with `value`).
fn probe_with_setup(name: &str, setup: &str, value: &str) -> String {
    format!(
        "[[validators]]\nname = {name:?}\nplugin = {:?}\n[validators.settings]\nbehavior = \"remember-token\"\nsetup = {setup:?}\nvalue = {value:?}\n[validators.limits]\ncpu-ms = 200\ntimeout-ms = 2000\n",
        probe().display().to_string()
    )
}

#[test]
fn every_review_starts_from_what_setup_left_and_nothing_else() {
    let env = UserEnv::new();
    let webhook = Webhook::start(
        &env,
        &format!("[cache]\npositive-ttl-seconds = 0\n{}", probe_with_setup("prepared", "remember", "ready")),
    );
    for token in ["first-token", "second-token"] {
        let (status, answer) = webhook.review("v1", token, &[]);
        assert_eq!(status, 200, "{answer}");
        // What setup built is there; the earlier review's token is not.
        assert_eq!(answer["status"]["user"]["username"], "setup-ready.previous-none", "{answer}");
        // Nor in the host's table: setup's entry is, and a review cannot add one.
        assert_eq!(
            answer["status"]["user"]["groups"],
            json!([
                "table-setup-ready",
                "table-previous-none",
                "table-insert-refused: invalid request: `table.insert`: the table is read only in a review; \
                 a validator's setup fills it"
            ]),
            "{answer}"
        );
    }
}

#[test]
fn a_setup_that_leaves_a_stream_open_still_serves_and_says_why_it_is_slower() {
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &probe_with_setup("printing", "print", "printed"));
    for token in ["one-token", "two-token"] {
        let (_, answer) = webhook.review("v1", token, &[]);
        assert_eq!(answer["status"]["user"]["username"], "setup-printed.previous-none", "{answer}");
        // Setup runs in the review's own instance, and fills the review's own table.
        assert_eq!(
            answer["status"]["user"]["groups"],
            json!(["table-setup-printed", "table-previous-none", "table-insert-accepted"]),
            "{answer}"
        );
    }
    assert!(
        webhook.log().contains("which a snapshot cannot keep; its setup will run in every review"),
        "{}",
        webhook.log()
    );
}

#[test]
fn a_failing_setup_is_a_load_error_in_check_start_up_and_reload() {
    let env = UserEnv::new();
    let dir = env.home().join("setup");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("serve.toml");
    let plain = "[server]\ninsecure-plain-http = true\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&config, format!("{plain}{}", probe_with_setup("picky", "fail", ""))).unwrap();
    let check = env.run(&["serve", "--config", config.to_str().unwrap(), "--check"]);
    let error = check.error();
    assert!(error.contains("validator `picky`"), "{error}");
    assert!(error.contains("setup refuses this configuration"), "{error}");

    std::fs::write(&config, format!("{plain}{}", probe_with_setup("looping", "loop", ""))).unwrap();
    let check = env.run(&["serve", "--config", config.to_str().unwrap(), "--check"]);
    let error = check.error();
    assert!(error.contains("validator `looping`") && error.contains("CPU time limit of 200 ms"), "{error}");

    // A reload to a configuration whose setup fails keeps the old one serving.
    let webhook = Webhook::start(&env, &probe_with_setup("prepared", "remember", "one"));
    webhook.rewrite(&probe_with_setup("prepared", "fail", ""));
    webhook.wait_for("the failed reload", || webhook.metric(r#"credbroker_reloads_total{result="failure"}"#) >= 1.0);
    assert!(webhook.log().contains("setup refuses this configuration"), "{}", webhook.log());
    let (_, answer) = webhook.review("v1", "tok", &[]);
    assert_eq!(answer["status"]["user"]["username"], "setup-one.previous-none", "{answer}");
}

/// A probe validator that says every token is `username` in `groups`.
fn asserting(name: &str, prefix: &str, username: &str, groups: &str, identities: &str) -> String {
    format!(
        "[[validators]]\nname = {name:?}\nplugin = {:?}\ntoken-prefix = {prefix:?}\n[validators.settings]\nbehavior = \"identity\"\nusername = {username:?}\ngroups = {groups:?}\n[validators.identities]\n{identities}\n",
        probe().display().to_string()
    )
}

#[test]
fn validators_assert_only_the_identities_they_are_granted() {
    let env = UserEnv::new();
    let webhook = Webhook::start(
        &env,
        &[
            asserting("rogue", "r-", "system:admin", "system:masters", ""),
            asserting("sneaky", "s-", "alice", "devs,system:masters", ""),
            asserting(
                "nodes",
                "n-",
                "system:node:ip-10-1-2-3",
                "system:nodes",
                "usernames = [\"system:node:*\"]\ngroups = [\"system:nodes\"]",
            ),
            asserting("corp", "c-", "ldap:bob", "oidc:devs", "username-prefixes = [\"oidc:\"]"),
        ]
        .concat(),
    );
    let (status, answer) = webhook.review("v1", "r-token", &[]);
    assert_eq!(status, 200);
    assert_eq!(answer["status"]["authenticated"], false, "{answer}");
    let error = answer["status"]["error"].as_str().unwrap();
    assert!(
        error.contains("rogue: it asserted username `system:admin`, in the reserved `system:` namespace"),
        "{error}"
    );
    assert!(error.contains("[validators.identities] usernames = [\"system:admin\"]"), "says what to grant: {error}");

    let (_, answer) = webhook.review("v1", "s-token", &[]);
    assert_eq!(answer["status"]["authenticated"], false, "{answer}");
    assert!(answer["status"]["error"].as_str().unwrap().contains("group `system:masters`"), "{answer}");

    let (_, answer) = webhook.review("v1", "n-token", &[]);
    assert_eq!(answer["status"]["user"]["username"], "system:node:ip-10-1-2-3", "granted: {answer}");
    assert_eq!(answer["status"]["user"]["groups"], json!(["system:nodes"]));

    let (_, answer) = webhook.review("v1", "c-token", &[]);
    assert!(answer["status"]["error"].as_str().unwrap().contains("outside this validator's prefixes"), "{answer}");

    assert_eq!(webhook.metric(r#"credbroker_identity_refusals_total{validator="rogue",kind="username"}"#), 1.0);
    assert_eq!(webhook.metric(r#"credbroker_identity_refusals_total{validator="sneaky",kind="group"}"#), 1.0);
    assert!(webhook.log().contains("identity refused"), "logged for the operator");
}
/// `--insecure-plain-http` stands in for the TLS files, as the operator guide
/// says: a file without them checks and serves with the flag (and only with it).
#[test]
fn the_plain_http_flag_stands_in_for_tls_files() {
    use std::io::{BufRead, BufReader};
    let env = UserEnv::new();
    let config = env.home().join("serve.toml");
    std::fs::write(&config, token_file_validator(&env, "")).unwrap();
    let path = config.to_str().unwrap();

    let refused = env.run(&["serve", "--config", path, "--check"]);
    assert_eq!(refused.code, Some(1), "{}", refused.stdout);
    assert!(refused.stderr.contains("needs tls-cert-file and tls-key-file"), "{}", refused.stderr);
    let check = env.run(&["serve", "--config", path, "--check", "--insecure-plain-http"]);
    assert_eq!(check.code, Some(0), "{}", check.stderr);
    assert!(check.stdout.starts_with(&format!("{path}: OK\n")), "{}", check.stdout);

    let mut server = env
        .credbroker(&["serve", "--config", path, "--insecure-plain-http", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines().map_while(Result::ok);
    let url = lines
        .find_map(|line| {
            line.split("serving TokenReviews on ").nth(1).map(|r| r.split(' ').next().unwrap().to_string())
        })
        .expect("the serving line");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let answer: serde_json::Value =
        plain_client().post(&url).body(review_body("v1", "tok-alice", &[])).send().and_then(|r| r.json()).unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(answer["status"]["user"]["username"], "alice", "{answer}");
}

/// `body` as prometheus_client's parser for `format` (`text` or `openmetrics`)
/// reads it: its families, or what the parser said.
fn parse_metrics(format: &str, body: &str) -> Result<Vec<serde_json::Value>, String> {
    use std::io::Write as _;
    let mut parser = std::process::Command::new(crate::harness::sts::python())
        .arg(crate::harness::root().join("tests/fixtures/prometheus/parse.py"))
        .arg(format)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("parse.py (run scripts/install-test-deps)");
    parser.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let output = parser.wait_with_output().unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&output.stdout).expect("parse.py prints JSON"))
}

/// Prometheus (and its Python client's two parsers) read /metrics in the format
/// each scraper asks for: every family typed, counters as counters, and a
/// validator named `we"ird\name` intact.
#[test]
fn metrics_parse_in_the_format_asked_for() {
    const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
    const OPEN_METRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let env = UserEnv::new();
    let name = r#"we"ird\name"#;
    let validator = token_file_validator(&env, "").replace(r#"name = "tokens""#, &format!("name = '{name}'"));
    let webhook = Webhook::start(&env, &validator);
    assert_eq!(webhook.review("v1", "tok-alice", &[]).1["status"]["user"]["username"], "alice");
    let cases = [
        (None, "text", TEXT),
        (Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), "text", TEXT),
        // Prometheus 2.x's default scrape header.
        (
            Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                 text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            ),
            "openmetrics",
            OPEN_METRICS,
        ),
        (Some("application/openmetrics-text"), "openmetrics", OPEN_METRICS),
    ];
    for (accept, parser, content_type) in cases {
        let mut request = webhook.client().get(format!("{}/metrics", webhook.url));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().unwrap();
        assert_eq!(response.headers()["content-type"], content_type, "{accept:?}");
        let body = response.text().unwrap();
        let families = parse_metrics(parser, &body).unwrap_or_else(|e| panic!("{accept:?}: {e}\n{body}"));
        let family = |name: &str| {
            families.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("no {name} in {families:?}"))
        };
        let untyped: Vec<_> =
            families.iter().filter(|f| matches!(f["type"].as_str(), Some("untyped" | "unknown"))).collect();
        assert!(untyped.is_empty(), "{accept:?}: untyped families {untyped:?}\n{body}");
        let reviews = family("credbroker_reviews");
        assert_eq!(reviews["type"], "counter", "{accept:?}");
        let labels = json!({ "validator": name, "outcome": "authenticated" });
        let sample = reviews["samples"].as_array().unwrap().iter().find(|s| s["labels"] == labels);
        assert!(
            sample.is_some_and(|s| s["name"] == "credbroker_reviews_total" && s["value"].as_f64() == Some(1.0)),
            "{accept:?}: {reviews}"
        );
        assert_eq!(family("credbroker_review_duration_seconds")["type"], "histogram");
        assert_eq!(family("credbroker_validators")["samples"][0]["value"].as_f64(), Some(1.0));
    }
}

/// A token file of `lines` generated users (`tok-N,userN,uidN,"teamM"`).
fn generated_tokens(path: &std::path::Path, lines: usize) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..lines {
        writeln!(file, "tok-{i:07}-{:x},user{i},uid{i},\"team{}\"", i * 7919, i % 13).unwrap();
    }
}

/// The token-file validator over `path`, with room for a large file.
fn big_token_file_validator(path: &std::path::Path) -> String {
    format!(
        "[[validators]]\nname = \"tokens\"\nplugin = \"token-file\"\n[validators.settings]\npath = {p:?}\n[validators.grants]\nfiles = [{p:?}]\n[validators.limits]\nmax-call-bytes = 16777216\nmemory-mib = 128\ncpu-ms = 20000\n",
        p = path.display().to_string()
    )
}

#[test]
fn a_large_token_file_is_indexed_once_and_changes_reload_without_dropping_a_review() {
    let env = UserEnv::new();
    let csv = env.home().join("many.csv");
    generated_tokens(&csv, 100_000);
    let webhook = Arc::new(Webhook::start(
        &env,
        &format!("[cache]\npositive-ttl-seconds = 0\nnegative-ttl-seconds = 0\n{}", big_token_file_validator(&csv)),
    ));
    for i in [0usize, 1, 54_321, 99_999] {
        let (status, answer) = webhook.review("v1", &format!("tok-{i:07}-{:x}", i * 7919), &[]);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"]["user"]["username"], format!("user{i}"), "{answer}");
        assert_eq!(answer["status"]["user"]["groups"], json!([format!("team{}", i % 13)]));
    }
    assert_eq!(webhook.review("v1", "tok-0000000-1", &[]).1["status"]["authenticated"], false);

    // Reviews keep flowing while the file changes: each sees the old or the new file.
    let running = Arc::new(AtomicBool::new(true));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (webhook, running) = (Arc::clone(&webhook), Arc::clone(&running));
            std::thread::spawn(move || {
                let mut answered = 0;
                while running.load(Ordering::SeqCst) {
                    let (status, answer) = webhook.review("v1", &format!("tok-0000001-{:x}", 7919), &[]);
                    assert_eq!(status, 200, "{answer}");
                    assert_eq!(answer["status"]["user"]["username"], "user1", "{answer}");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("tok-new-line,newcomer,n1\n");
    let replacement = env.home().join("many.csv.new");
    std::fs::write(&replacement, &text).unwrap();
    std::fs::rename(&replacement, &csv).unwrap();
    webhook.wait_for("the reload", || webhook.metric(r#"credbroker_reloads_total{result="success"}"#) >= 1.0);
    assert_eq!(webhook.review("v1", "tok-new-line", &[]).1["status"]["user"]["username"], "newcomer");

    // A file grown past the bound is refused at the reload, naming the size
    // and the limit, and the old one keeps serving.
    generated_tokens(&replacement, 400_000);
    std::fs::rename(&replacement, &csv).unwrap();
    webhook.wait_for("the failed reload", || webhook.metric(r#"credbroker_reloads_total{result="failure"}"#) >= 1.0);
    assert!(webhook.log().contains("over the per-call limit (max-call-bytes) of 16777216 bytes"), "{}", webhook.log());
    assert_eq!(webhook.review("v1", "tok-new-line", &[]).1["status"]["user"]["username"], "newcomer");
    running.store(false, Ordering::SeqCst);
    let answered: usize = load.into_iter().map(|t| t.join().expect("no review failed")).sum();
    assert!(answered > 10, "{answered}");
}

#[test]
fn a_token_file_over_the_bound_or_broken_fails_the_check() {
    let env = UserEnv::new();
    let dir = env.home().join("check");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("tokens.csv");
    let config = dir.join("serve.toml");
    let plain = "[server]\ninsecure-plain-http = true\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&config, format!("{plain}{}", token_file_at(&csv))).unwrap();
    std::fs::write(&csv, "x".repeat(2 * 1024 * 1024)).unwrap();
    let check = env.run(&["serve", "--config", config.to_str().unwrap(), "--check"]);
    let error = check.error();
    assert!(error.contains("validator `tokens`") && error.contains("2097152 bytes"), "{error}");
    assert!(error.contains("per-call limit (max-call-bytes) of 1048576 bytes"), "{error}");
    std::fs::write(&csv, "t1,alice,1\nbroken\n").unwrap();
    let error = env.run(&["serve", "--config", config.to_str().unwrap(), "--check"]).error().to_string();
    assert!(error.contains("line 2: needs at least token,user,uid"), "{error}");
    std::fs::remove_file(&csv).unwrap();
    let error = env.run(&["serve", "--config", config.to_str().unwrap(), "--check"]).error().to_string();
    assert!(error.contains("cannot read") && error.contains("tokens.csv"), "{error}");

    // The host's table counts against the setup's memory: a file whose
    // index does not fit is refused at load, naming the limit.
    generated_tokens(&csv, 15_000);
    std::fs::write(&config, format!("{plain}{}[validators.limits]\nmemory-mib = 3\n", token_file_at(&csv))).unwrap();
    let error = env.run(&["serve", "--config", config.to_str().unwrap(), "--check"]).error().to_string();
    assert!(error.contains("validator `tokens`") && error.contains("3 MiB"), "{error}");
    std::fs::write(&config, format!("{plain}{}", token_file_at(&csv))).unwrap();
    let check = env.run(&["serve", "--config", config.to_str().unwrap(), "--check"]);
    assert_eq!(check.code, Some(0), "{}", check.stderr);
}

/// The token-file validator over `path` with the default limits.
fn token_file_at(path: &std::path::Path) -> String {
    format!(
        "[[validators]]\nname = \"tokens\"\nplugin = \"token-file\"\n[validators.settings]\npath = {p:?}\n[validators.grants]\nfiles = [{p:?}]\n",
        p = path.display().to_string()
    )
}

#[test]
fn http2_reviews_work_and_a_silent_http2_peer_is_closed() {
    use std::io::Read;
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &format!("request-head-timeout-ms = 1000\n{}", token_file_validator(&env, "")));
    let files = |name: &str, pem: &str| {
        let path = webhook.dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let (ca, cert, key) = (
        files("curl-ca.pem", &webhook.server_ca.cert_pem),
        files("curl-cert.pem", &webhook.apiserver_cert.cert_pem),
        files("curl-key.pem", &webhook.apiserver_cert.key_pem),
    );
    // kube-apiserver speaks HTTP/2 to webhooks: so does curl, by ALPN.
    let output = std::process::Command::new("curl")
        .args(["-sS", "--http2", "--cacert", &ca, "--cert", &cert, "--key", &key, "-w", "\n%{http_version}"])
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(String::from_utf8(review_body("v1", "tok-alice", &[])).unwrap())
        .arg(format!("{}/authenticate", webhook.url))
        .output()
        .expect("curl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (body, version) = stdout.rsplit_once('\n').unwrap();
    assert_eq!(version, "2", "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    let answer: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(answer["status"]["user"]["username"], "alice");

    // Peers that negotiate HTTP/2 and then say nothing, or only the preface,
    // are closed after the request head timeout like HTTP/1.1 ones; one that
    // spoke HTTP/2 gets a GOAWAY first (as an idle kube-apiserver connection
    // does, so it knows to open a new one).
    let mut tls = crate::harness::webhook::tls_config(&webhook.server_ca.cert_pem, Some(&webhook.apiserver_cert));
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tls = Arc::new(tls);
    for preface in [&b""[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0"] {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let connection = rustls::ClientConnection::new(Arc::clone(&tls), name).unwrap();
        let tcp = std::net::TcpStream::connect(webhook.addr()).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        std::io::Write::write_all(&mut stream, preface).unwrap();
        let mut rest = Vec::new();
        let ended = stream.read_to_end(&mut rest);
        assert_eq!(stream.conn.alpn_protocol(), Some(&b"h2"[..]));
        assert!(
            !matches!(&ended, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "a silent HTTP/2 connection was kept open"
        );
        let mut frames = Vec::new();
        let mut at = 0;
        while at + 9 <= rest.len() {
            let length = u32::from_be_bytes([0, rest[at], rest[at + 1], rest[at + 2]]) as usize;
            frames.push(rest[at + 3]);
            at += 9 + length;
        }
        if !preface.is_empty() {
            assert!(frames.contains(&0x7), "no GOAWAY among the server's frames {frames:?}");
        }
    }
}
