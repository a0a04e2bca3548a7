//! LDAP end to end against a real OpenLDAP: kubectl → `credbroker get
//! --provider ldap` → the login endpoint of `credbroker serve` (which checks
//! the password with the directory and issues a short-lived token) → the
//! API server asks the webhook about that token → user and groups from LDAP.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::apiserver::ApiServer;
use crate::harness::kubectl::{self, Exec};
use crate::harness::slapd::{self, Slapd};
use crate::harness::webhook::{Webhook, client};
use crate::harness::{Run, UserEnv};

struct Setup {
    slapd: Slapd,
    env: UserEnv,
    webhook: Webhook,
}

/// An Ed25519 signing key, PKCS#8 PEM.
fn signing_key() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap().serialize_pem()
}

/// slapd, and credbroker serve with an `ldap` login backend named `corp-ldap`
/// reaching `url` (one of slapd's) with `grants`.
fn setup_with(url: impl Fn(&Slapd) -> String, grants: impl Fn(&Slapd) -> String, login: &str) -> Setup {
    setup_serving(url, grants, login, "")
}

/// As [`setup_with`], with `server` lines added to `[server]`.
fn setup_serving(
    url: impl Fn(&Slapd) -> String,
    grants: impl Fn(&Slapd) -> String,
    login: &str,
    server: &str,
) -> Setup {
    let slapd = Slapd::start();
    let env = UserEnv::new();
    let dir = env.home();
    std::fs::write(dir.join("signing.pem"), signing_key()).unwrap();
    std::fs::write(dir.join("broker-password"), format!("{}\n", slapd::BROKER_PASSWORD)).unwrap();
    let config = format!(
        r#"{server}
[cache]
positive-ttl-seconds = 0
negative-ttl-seconds = 0

[login]
signing-key-file = {signing:?}
recheck-seconds = 1
{login}

[[validators]]
name = "corp-ldap"
plugin = "ldap"
[validators.settings]
url = {url:?}
bind-dn = {bind_dn:?}
bind-password = "file:{password}"
user-base = "ou=people,{base}"
[validators.grants]
{grants}
ca-file = {ca:?}
"#,
        signing = dir.join("signing.pem").display().to_string(),
        url = url(&slapd),
        bind_dn = slapd::BROKER_DN,
        password = dir.join("broker-password").display(),
        base = slapd::BASE,
        grants = grants(&slapd),
        ca = slapd.ca_file().display().to_string(),
    );
    let webhook = Webhook::start(&env, &config);
    Setup { slapd, env, webhook }
}

fn setup() -> Setup {
    setup_with(|s| s.ldaps_url.clone(), |s| format!("ldap = [{:?}, {:?}]", s.ldaps_url, s.ldap_url), "")
}

impl Setup {
    /// POST a login, as the ldap provider does; no client certificate needed.
    fn login(&self, username: &str, password: &str) -> (u16, Value) {
        crate::harness::audit::secret(password);
        let response = client(&self.webhook.server_ca.cert_pem, None)
            .post(format!("{}/v1/login/corp-ldap", self.webhook.url))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .expect("login");
        let status = response.status().as_u16();
        let answer: Value = serde_json::from_str(&response.text().unwrap()).unwrap();
        if let Some(token) = answer["token"].as_str() {
            crate::harness::audit::secret(token);
        }
        (status, answer)
    }

    /// A credbroker profile `corp` for the ldap provider.
    fn profile(&self, username: &str) {
        let ca = self.env.home().join("webhook-ca.pem");
        std::fs::write(&ca, &self.webhook.server_ca.cert_pem).unwrap();
        self.env.write_config(&format!(
            "[profiles.corp]\nplugin = \"ldap\"\n[profiles.corp.settings]\nlogin-url = \"{url}/v1/login/corp-ldap\"\nusername = {username:?}\npassword = \"env:LDAP_PASSWORD\"\n[profiles.corp.grants]\nhttp = [{url:?}]\nca-file = {ca:?}\n",
            url = self.webhook.url,
            ca = ca.display().to_string(),
        ));
    }
}

#[test]
fn kubectl_logs_in_with_ldap_and_the_webhook_returns_user_and_groups() {
    let setup = setup();
    setup.profile("alice");
    let (apiserver, users) = ApiServer::with_webhook(&setup.webhook);
    let config = kubectl::kubeconfig(&setup.env, &apiserver, &Exec::v1(&["get", "--provider", "corp"]));
    let run = Run::of(
        kubectl::command(&setup.env, "1.33", &config, &["get", "--raw", "/version"])
            .env("LDAP_PASSWORD", "alice-pw")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, setup.webhook.log());
    let users = users.lock().unwrap().clone();
    assert_eq!(users, ["alice"]);

    // The token the provider got is the server's, not the password.
    let token = apiserver.tokens_seen()[0].clone();
    assert!(!token.contains("alice-pw"));
    let (_, answer) = setup.webhook.review("v1", &token, &[]);
    assert_eq!(answer["status"]["user"]["username"], "alice");
    assert_eq!(answer["status"]["user"]["groups"], json!(["devs", "ops"]));
    assert!(!answer["status"]["user"]["uid"].as_str().unwrap().is_empty(), "uid is the entryUUID");
    assert!(!setup.webhook.log().contains("alice-pw"), "the password is never logged");
}

#[test]
fn wrong_passwords_and_unknown_users_look_the_same() {
    let setup = setup();
    let wrong = setup.login("alice", "not-her-password");
    let unknown = setup.login("mallory", "whatever");
    let injection = setup.login("*)(uid=*", "alice-pw");
    let wildcard = setup.login("*", "alice-pw");
    let empty = setup.login("alice", "");
    for answer in [&wrong, &unknown, &injection, &wildcard, &empty] {
        assert_eq!(*answer, (401, json!({ "error": "invalid username or password" })));
    }
    let (status, ok) = setup.login("bob", "bob-pw");
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["user"], json!({ "username": "bob", "groups": ["devs"] }));
}

#[test]
fn kubectl_shows_a_failed_login() {
    let setup = setup();
    setup.profile("alice");
    let (apiserver, _) = ApiServer::with_webhook(&setup.webhook);
    let config = kubectl::kubeconfig(&setup.env, &apiserver, &Exec::v1(&["get", "--provider", "corp"]));
    let run = Run::of(
        kubectl::command(&setup.env, "1.27", &config, &["get", "--raw", "/version"])
            .env("LDAP_PASSWORD", "wrong")
            .output()
            .unwrap(),
    );
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("failed: denied: invalid username or password"), "{}", run.stderr);

    // Without a password source and without a terminal, say what to configure.
    let run = Run::of(kubectl::command(&setup.env, "1.27", &config, &["get", "--raw", "/version"]).output().unwrap());
    assert!(run.stderr.contains("environment variable `LDAP_PASSWORD` is not set"), "{}", run.stderr);
    setup.env.write_config(
        &std::fs::read_to_string(setup.env.config_dir().join("config.toml"))
            .unwrap()
            .replace("password = \"env:LDAP_PASSWORD\"\n", ""),
    );
    let run = Run::of(kubectl::command(&setup.env, "1.27", &config, &["get", "--raw", "/version"]).output().unwrap());
    assert!(
        run.stderr.contains("no password and not interactive: set `password` to env:VARIABLE or file:PATH"),
        "{}",
        run.stderr
    );
}

#[test]
fn group_changes_and_removed_users_reach_issued_tokens() {
    let setup = setup();
    let (_, login) = setup.login("alice", "alice-pw");
    let token = login["token"].as_str().unwrap().to_string();
    assert_eq!(setup.webhook.review("v1", &token, &[]).1["status"]["user"]["groups"], json!(["devs", "ops"]));

    setup.slapd.modify(&format!(
        "dn: cn=devs,ou=groups,{}\nchangetype: modify\ndelete: member\nmember: uid=alice,ou=people,{}\n",
        slapd::BASE,
        slapd::BASE
    ));
    // recheck-seconds = 1: the next review after a second sees the change.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(setup.webhook.review("v1", &token, &[]).1["status"]["user"]["groups"], json!(["ops"]));

    setup.slapd.modify(&format!("dn: uid=alice,ou=people,{}\nchangetype: delete\n", slapd::BASE));
    std::thread::sleep(Duration::from_millis(1200));
    let (status, answer) = setup.webhook.review("v1", &token, &[]);
    assert_eq!(status, 200);
    assert_eq!(answer["status"]["authenticated"], false);
    assert_eq!(answer["status"]["error"], "corp-ldap: user `alice` no longer exists");
}

#[test]
fn an_ldap_outage_is_transient_and_recovers() {
    let mut setup = setup();
    let (_, login) = setup.login("bob", "bob-pw");
    let token = login["token"].as_str().unwrap().to_string();
    setup.slapd.stop();
    std::thread::sleep(Duration::from_millis(1200));
    let (status, answer) = setup.webhook.review("v1", &token, &[]);
    assert_eq!(status, 503, "the apiserver retries: {answer}");
    let (status, answer) = setup.login("bob", "bob-pw");
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "the login backend is unavailable; try again later");

    setup.slapd.launch();
    assert_eq!(setup.webhook.review("v1", &token, &[]).0, 200);
    assert_eq!(setup.login("bob", "bob-pw").0, 200);
}

#[test]
fn starttls_works_and_unlisted_servers_are_refused() {
    let setup = setup_with(|s| s.ldap_url.clone(), |s| format!("ldap = [{:?}]", s.ldap_url), "");
    assert_eq!(setup.login("bob", "bob-pw").0, 200, "ldap:// is upgraded with StartTLS");

    let refused = setup_with(|s| s.ldaps_url.clone(), |s| format!("ldap = [{:?}]", s.ldap_url), "");
    let (status, _) = refused.login("bob", "bob-pw");
    assert_eq!(status, 500);
    // The log is read from the server's stderr by a thread of its own, so
    // the line may arrive just after the answer.
    refused.webhook.wait_for("the allowlist refusal in the log", || {
        refused.webhook.log().contains("is not in this plugin's LDAP allowlist (grants.ldap)")
    });
}

#[test]
fn repeated_failures_are_rate_limited() {
    let setup = setup_with(
        |s| s.ldaps_url.clone(),
        |s| format!("ldap = [{:?}]", s.ldaps_url),
        "max-failures-per-user = 3\nfailure-window-seconds = 60",
    );
    for _ in 0..3 {
        assert_eq!(setup.login("alice", "guess").0, 401);
    }
    let (status, answer) = setup.login("alice", "alice-pw");
    assert_eq!(status, 429, "even the right password waits: {answer}");
    assert!(answer["error"].as_str().unwrap().starts_with("too many failed logins; try again in"));
    assert_eq!(setup.login("bob", "bob-pw").0, 200, "other users are not affected");
}

#[test]
fn concurrent_wrong_passwords_reach_the_directory_at_most_the_limit() {
    let setup = setup_with(
        |s| s.ldaps_url.clone(),
        |s| format!("ldap = [{:?}]", s.ldaps_url),
        "max-failures-per-user = 5\nfailure-window-seconds = 300",
    );
    // slapd's own count of searches: each login the backend runs looks the
    // user up once; reading the count is a search too, so measure that first.
    let (first, second) = (setup.slapd.operations("Search"), setup.slapd.operations("Search"));
    let reading = second - first;
    let before = setup.slapd.operations("Search");

    let start = std::sync::Arc::new(std::sync::Barrier::new(100));
    let attempts: Vec<_> = (0..100)
        .map(|i| {
            let (start, ca, url) =
                (std::sync::Arc::clone(&start), setup.webhook.server_ca.cert_pem.clone(), setup.webhook.url.clone());
            let password = format!("guess-{i}");
            crate::harness::audit::secret(&password);
            std::thread::spawn(move || {
                let http = client(&ca, None);
                start.wait();
                let response = http
                    .post(format!("{url}/v1/login/corp-ldap"))
                    .json(&json!({ "username": "alice", "password": password }))
                    .send()
                    .expect("login");
                (response.status().as_u16(), response.text().unwrap())
            })
        })
        .collect();
    let answers: Vec<(u16, String)> = attempts.into_iter().map(|t| t.join().unwrap()).collect();
    let reached = setup.slapd.operations("Search") - before - reading;

    let rejected = answers.iter().filter(|(status, _)| *status == 401).count();
    let refused: Vec<_> = answers.iter().filter(|(status, _)| *status == 429).collect();
    assert_eq!(rejected, 5, "{answers:?}");
    assert_eq!(refused.len(), 95, "{answers:?}");
    for (_, body) in &refused {
        assert!(body.contains("too many failed logins; try again in"), "{body}");
    }
    assert_eq!(reached, 5, "slapd saw {reached} logins of 100 with max-failures-per-user = 5");
    assert_eq!(setup.webhook.log().matches("login failed").count(), 5, "{}", setup.webhook.log());
    // And alice stays locked out, even with her password.
    assert_eq!(setup.login("alice", "alice-pw").0, 429);
    assert_eq!(setup.login("bob", "bob-pw").0, 200, "other users are not affected");
}

#[test]
fn review_needs_the_apiserver_certificate_but_login_does_not() {
    let setup = setup();
    let anonymous = client(&setup.webhook.server_ca.cert_pem, None);
    let body = crate::harness::webhook::review_body("v1", "anything", &[]);
    let response = anonymous.post(format!("{}/authenticate", setup.webhook.url)).body(body).send().unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let answer: Value = serde_json::from_str(&response.text().unwrap()).unwrap();
    assert_eq!(answer["status"]["error"], "TokenReviews need a client certificate signed by the configured client CA");
    assert_eq!(setup.login("bob", "bob-pw").0, 200);
}

/// A directory that answers a search with an endless stream of 64 KiB
/// entries: the host stops reading as soon as they pass `max-call-bytes`,
/// closes the connection, and its memory never follows the stream.
#[test]
fn a_directory_streaming_entries_cannot_make_the_host_hold_them() {
    let flood = crate::harness::ldap_flood::LdapFlood::start();
    let env = UserEnv::new();
    std::fs::write(env.home().join("signing.pem"), signing_key()).unwrap();
    let config = format!(
        "[login]\nsigning-key-file = {signing:?}\n\n[[validators]]\nname = \"corp-ldap\"\nplugin = \"ldap\"\n\
         [validators.settings]\nurl = {url:?}\nbind-dn = \"cn=broker,dc=flood\"\nbind-password = \"broker-pw-1\"\nuser-base = \"dc=flood\"\n\
         [validators.grants]\nldap = [{url:?}]\nldap-allow-plaintext = true\n[validators.limits]\nmemory-mib = 32\n",
        signing = env.home().join("signing.pem").display().to_string(),
        url = flood.url,
    );
    let webhook = Webhook::start(&env, &config);
    let before = webhook.peak_rss_kib();
    crate::harness::audit::secret("flood-pw-123");
    let response = client(&webhook.server_ca.cert_pem, None)
        .post(format!("{}/v1/login/corp-ldap", webhook.url))
        .json(&json!({ "username": "flood", "password": "flood-pw-123" }))
        .send()
        .expect("login");
    assert!(matches!(response.status().as_u16(), 500 | 503), "{}", response.status());
    webhook.wait_for("the log line", || webhook.log().contains("exceed the per-call limit"));
    assert!(webhook.log().contains("the search was stopped"), "{}", webhook.log());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let sent = flood.sent();
    let peak = webhook.peak_rss_kib();
    assert!(
        peak < before + 100 * 1024,
        "the server went from {} to {} MiB while the directory sent {} MiB",
        before / 1024,
        peak / 1024,
        sent >> 20
    );
    assert!(sent < 256 << 20, "the host stopped reading: the directory got {} MiB out", sent >> 20);
}
