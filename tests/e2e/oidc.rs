//! OpenID Connect end to end against a real provider (`oidc-provider` on
//! node): the `oidc` provider's flows through the real kubectl, and the `jwt`
//! validator deciding on those tokens in `credbroker serve`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::apiserver::ApiServer;
use crate::harness::kubectl::{self, Exec};
use crate::harness::oidc::OidcProvider;
use crate::harness::webhook::Webhook;
use crate::harness::{Run, UserEnv};

/// A `jwt` validator named `idp` for `provider`, with `extra` TOML settings.
fn jwt_validator(provider: &OidcProvider, issuer: &str, extra: &str) -> String {
    format!(
        r#"[cache]
positive-ttl-seconds = 0
negative-ttl-seconds = 0

[[validators]]
name = "idp"
plugin = "jwt"
[validators.settings]
issuer = {issuer:?}
audiences = "public,confidential,https://kubernetes.example"
username-prefix = "oidc:"
groups-prefix = "oidc:"
jwks-min-refresh-seconds = "0"
{extra}
[validators.grants]
http = [{origin:?}]
ca-file = {ca:?}
"#,
        origin = provider.issuer,
        ca = provider.ca_file().display().to_string(),
    )
}

/// A credbroker profile `idp` for the oidc provider plugin.
pub(crate) fn oidc_profile(env: &UserEnv, provider: &OidcProvider, settings: &str, grants: &str) {
    env.write_config(&format!(
        "[profiles.idp]\nplugin = \"oidc\"\ncache-margin-seconds = 0\n[profiles.idp.settings]\nissuer = {issuer:?}\n{settings}\n[profiles.idp.grants]\nhttp = [{issuer:?}]\nca-file = {ca:?}\n{grants}\n",
        issuer = provider.issuer,
        ca = provider.ca_file().display().to_string(),
    ));
}

struct Cluster {
    webhook: Webhook,
    apiserver: ApiServer,
    users: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn cluster(env: &UserEnv, provider: &OidcProvider) -> Cluster {
    let webhook = Webhook::start(env, &jwt_validator(provider, &provider.issuer, ""));
    let (apiserver, users) = ApiServer::with_webhook(&webhook);
    Cluster { webhook, apiserver, users }
}

/// Run kubectl; when the provider prints a device code or a URL on stderr,
/// act on it like the user would (`act` gets each stderr line).
pub(crate) fn kubectl_acting(env: &UserEnv, config: &std::path::Path, act: impl Fn(&str) + Send + 'static) -> Run {
    let mut child = kubectl::command(env, "1.33", &config.to_path_buf(), &["get", "--raw", "/version"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            act(&line);
            all.push_str(&line);
            all.push('\n');
        }
        let _ = tx.send(all);
    });
    let output = child.wait_with_output().expect("kubectl");
    let stderr = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    Run { code: output.status.code(), stdout: String::from_utf8_lossy(&output.stdout).into_owned(), stderr }
}

/// Approve the device code kubectl's plugin shows, as `login`.
pub(crate) fn device_approver(provider: &OidcProvider, login: &'static str) -> impl Fn(&str) + Send + 'static {
    let issuer = provider.issuer.clone();
    let ca = provider.ca.cert_pem.clone();
    let port = provider.port;
    move |line: &str| {
        // The host frames plugin messages (`│ ` margin), so look inside the line.
        let shown = line.split_once("(or open ").map(|(_, rest)| rest.trim_end());
        if let Some(url) = shown.and_then(|r| r.strip_suffix(')')) {
            let code = url.rsplit("user_code=").next().unwrap_or_default().to_string();
            let approver = OidcProvider::attach(&issuer, port, &ca);
            approver.approve_device(url, &code, login);
        }
    }
}

#[test]
fn the_device_flow_through_kubectl_maps_user_and_groups() {
    let provider = OidcProvider::start(&[]);
    let env = UserEnv::new();
    let cluster = cluster(&env, &provider);
    oidc_profile(&env, &provider, "client-id = \"public\"\nflow = \"device\"", "");
    let config = kubectl::kubeconfig(&env, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    let run = kubectl_acting(&env, &config, device_approver(&provider, "alice"));
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, cluster.webhook.log());
    assert!(run.stderr.contains("To log in, open"), "the code is shown on stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("\u{250c}\u{2500} credbroker: message from plugin `oidc`"),
        "framed so it stands out, naming the plugin: {}",
        run.stderr
    );
    assert_eq!(cluster.users.lock().unwrap().as_slice(), ["oidc:alice"]);
    let token = cluster.apiserver.tokens_seen()[0].clone();
    let (_, answer) = cluster.webhook.review("v1", &token, &[]);
    assert_eq!(answer["status"]["user"]["groups"], json!(["oidc:devs", "oidc:ops"]));
    assert_eq!(answer["status"]["user"]["uid"], "alice");
}

#[test]
fn the_auth_code_flow_with_pkce_through_kubectl() {
    let provider = OidcProvider::start(&[]);
    let env = UserEnv::new();
    let cluster = cluster(&env, &provider);
    std::fs::write(env.home().join("secret"), "confidential-secret\n").unwrap();
    oidc_profile(
        &env,
        &provider,
        &format!(
            "client-id = \"confidential\"\nclient-secret = \"file:{}\"\nlogin-hint = \"bob\"",
            env.home().join("secret").display()
        ),
        "redirect-listener = true",
    );
    let config = kubectl::kubeconfig(&env, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    let issuer = provider.issuer.clone();
    let ca = provider.ca.cert_pem.clone();
    let port = provider.port;
    let run = kubectl_acting(&env, &config, move |line| {
        // The URL is shown in the plugin's message frame.
        let line = line.trim().trim_start_matches('\u{2502}').trim();
        if line.starts_with(&format!("{issuer}/auth?")) {
            OidcProvider::attach(&issuer, port, &ca).complete_authorization(line);
        }
    });
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, cluster.webhook.log());
    assert!(run.stderr.contains("Open this URL in your browser to log in"), "{}", run.stderr);
    assert_eq!(cluster.users.lock().unwrap().as_slice(), ["oidc:bob"]);
    assert!(!run.stderr.contains("confidential-secret"));
}

#[test]
fn client_credentials_through_kubectl() {
    let provider = OidcProvider::start(&[]);
    let env = UserEnv::new();
    let cluster = cluster(&env, &provider);
    oidc_profile(
        &env,
        &provider,
        "client-id = \"confidential\"\nclient-secret = \"env:CLIENT_SECRET\"\nflow = \"client-credentials\"",
        "",
    );
    let config = kubectl::kubeconfig(&env, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    let run = Run::of(
        kubectl::command(&env, "1.27", &config, &["get", "--raw", "/version"])
            .env("CLIENT_SECRET", "confidential-secret")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, cluster.webhook.log());
    assert_eq!(cluster.users.lock().unwrap().as_slice(), ["oidc:confidential"]);
}

/// The refresh token the oidc provider keeps in the user's state.
fn stored_refresh_token(env: &UserEnv) -> Option<String> {
    let dir = env.home().join(".local/share/credbroker/state");
    let file = std::fs::read_dir(dir).ok()?.flatten().next()?.path();
    let map: serde_json::Map<String, Value> = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    let encoded = map.iter().find(|(k, _)| k.starts_with("refresh-token:"))?.1.as_str()?.to_string();
    let token = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok()?;
    crate::harness::audit::secret(token.clone());
    Some(token)
}

#[test]
fn tokens_are_refreshed_after_expiry_without_a_new_login() {
    let provider = OidcProvider::start(&[("OIDC_ID_TOKEN_TTL", "2")]);
    let env = UserEnv::new();
    let cluster = cluster(&env, &provider);
    oidc_profile(&env, &provider, "client-id = \"public\"\nflow = \"device\"", "");
    let config = kubectl::kubeconfig(&env, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    let run = kubectl_acting(&env, &config, device_approver(&provider, "alice"));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let first_refresh = stored_refresh_token(&env).expect("a refresh token is kept");
    let state_dir = env.home().join(".local/share/credbroker/state");
    assert_eq!(std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&state_dir).unwrap()) & 0o777, 0o700);

    std::thread::sleep(Duration::from_millis(2500));
    // Nobody approves anything now: the refresh token must do.
    let run = kubectl_acting(&env, &config, |_| {});
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("To log in"), "no new login: {}", run.stderr);
    assert_eq!(cluster.users.lock().unwrap().as_slice(), ["oidc:alice", "oidc:alice"]);

    // The public client's refresh token rotated; the old one is dead.
    let second_refresh = stored_refresh_token(&env).unwrap();
    assert_ne!(first_refresh, second_refresh, "the rotated refresh token was stored");
    let reuse: Value = provider
        .client(false)
        .post(format!("{}/token", provider.issuer))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &first_refresh), ("client_id", "public")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(reuse["error"], "invalid_grant");
}

#[test]
fn a_rejected_refresh_without_a_terminal_is_a_clear_error() {
    let provider = OidcProvider::start(&[("OIDC_ID_TOKEN_TTL", "1"), ("OIDC_REFRESH_TOKEN_TTL", "2")]);
    let env = UserEnv::new();
    let cluster = cluster(&env, &provider);
    oidc_profile(&env, &provider, "client-id = \"public\"\nflow = \"device\"", "");
    let config = kubectl::kubeconfig(&env, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    assert_eq!(kubectl_acting(&env, &config, device_approver(&provider, "alice")).code, Some(0));
    std::thread::sleep(Duration::from_millis(3000));
    let run = kubectl_acting(&env, &config, |_| {});
    assert_ne!(run.code, Some(0));
    assert!(
        run.stderr
            .contains("the stored refresh token was rejected (expired or revoked) and this run is not interactive"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_jwt_validator_rejects_bad_tokens_with_reasons() {
    let provider = OidcProvider::start(&[("OIDC_ACCESS_TOKEN_TTL", "2")]);
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &jwt_validator(&provider, &provider.issuer, "clock-skew-seconds = \"0\""));
    let good = provider.client_credentials_token();
    let (status, answer) = webhook.review("v1", &good, &[]);
    assert_eq!((status, &answer["status"]["user"]["username"]), (200, &json!("oidc:confidential")));

    let parts: Vec<&str> = good.split('.').collect();
    let payload: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let encode = |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let mut tampered = payload.clone();
    tampered["sub"] = json!("admin");
    let alg_none = format!("{}.{}.", encode(&json!({"alg": "none", "typ": "JWT"})), parts[1]);
    let unknown_kid = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some("nobody-knows-this-key".into());
        jsonwebtoken::encode(
            &header,
            &payload,
            &jsonwebtoken::EncodingKey::from_ed_pem(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let mut wrong_audience = payload.clone();
    wrong_audience["aud"] = json!("somebody-else");
    let cases = [
        (format!("{}.{}.{}", parts[0], encode(&tampered), parts[2]), "invalid signature: no RS256 key"),
        (format!("{}.{}.{}", parts[0], encode(&wrong_audience), parts[2]), "invalid signature"),
        (alg_none, "`alg: none` is never accepted"),
        (unknown_kid, "unknown key id nobody-knows-this-key"),
        ("not.a.jwt".to_string(), "not a JWT"),
    ];
    for (token, reason) in cases {
        let (status, answer) = webhook.review("v1", &token, &[]);
        assert_eq!(status, 200);
        assert_eq!(answer["status"]["authenticated"], false, "{token}");
        assert!(answer["status"]["error"].as_str().unwrap().contains(reason), "{reason}: {answer}");
    }
    // A token issued to another audience (the `other` client's id token is
    // not for us) and one from another issuer are refused too.
    let other_issuer = Webhook::start(&UserEnv::new(), &jwt_validator(&provider, "https://idp.evil.example", ""));
    let (_, answer) = other_issuer.review("v1", &good, &[]);
    let error = answer["status"]["error"].as_str().unwrap();
    assert!(error.contains("is not one this validator accepts (https://idp.evil.example)"), "{answer}");

    std::thread::sleep(Duration::from_millis(3100));
    let (_, answer) = webhook.review("v1", &good, &[]);
    assert!(answer["status"]["error"].as_str().unwrap().contains("the token expired"), "{answer}");
}

#[test]
fn a_rotated_signing_key_is_picked_up_without_restart() {
    let mut provider = OidcProvider::start(&[]);
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &jwt_validator(&provider, &provider.issuer, ""));
    let before = provider.client_credentials_token();
    assert_eq!(webhook.review("v1", &before, &[]).1["status"]["authenticated"], true);
    provider.restart();
    let after = provider.client_credentials_token();
    let (_, answer) = webhook.review("v1", &after, &[]);
    assert_eq!(answer["status"]["authenticated"], true, "the new key was fetched: {answer}");
    let (_, answer) = webhook.review("v1", &before, &[]);
    assert_eq!(answer["status"]["authenticated"], false, "the old key is gone from the JWKS");
}

#[test]
fn cel_rules_and_expressions_map_claims() {
    let provider = OidcProvider::start(&[]);
    let env = UserEnv::new();
    let mapped = Webhook::start(
        &env,
        &jwt_validator(
            &provider,
            &provider.issuer,
            r#"claim-validation-rules = '[{"expression": "claims.client_id == \"confidential\"", "message": "only the confidential client"}]'
username-expression = "'robot:' + claims.client_id"
groups-expression = "['robots', 'aud:' + claims.aud]""#,
        ),
    );
    let token = provider.client_credentials_token();
    let (_, answer) = mapped.review("v1", &token, &[]);
    assert_eq!(answer["status"]["user"]["username"], "robot:confidential", "{answer}");
    assert_eq!(answer["status"]["user"]["groups"], json!(["robots", "aud:https://kubernetes.example"]));

    let strict = Webhook::start(
        &UserEnv::new(),
        &jwt_validator(
            &provider,
            &provider.issuer,
            r#"claim-validation-rules = '[{"expression": "claims.client_id == \"other\"", "message": "only the other client"}]'"#,
        ),
    );
    let (_, answer) = strict.review("v1", &token, &[]);
    assert_eq!(answer["status"]["error"], "idp: only the other client", "{answer}");
}

#[test]
fn a_provider_outage_is_a_transient_error_and_recovers() {
    let mut provider = OidcProvider::start(&[]);
    let env = UserEnv::new();
    oidc_profile(
        &env,
        &provider,
        "client-id = \"confidential\"\nclient-secret = \"env:CLIENT_SECRET\"\nflow = \"client-credentials\"",
        "",
    );
    let get = |env: &UserEnv| {
        Run::of(
            env.credbroker(&["get", "--provider", "idp", "--no-cache"])
                .env("CLIENT_SECRET", "confidential-secret")
                .output()
                .unwrap(),
        )
    };
    assert_eq!(get(&env).code, Some(0));

    provider.kill();
    let down = get(&env);
    assert_eq!(down.code, Some(1));
    assert!(down.stdout.is_empty());
    assert!(down.error().contains("unavailable"), "a transient error, not a denial: {}", down.stderr);

    provider.restart();
    let back = get(&env);
    assert_eq!(back.code, Some(0), "{}", back.stderr);
}
