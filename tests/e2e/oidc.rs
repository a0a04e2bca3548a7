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
use crate::harness::keyring::SecretService;
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
fn oidc_profile(env: &UserEnv, provider: &OidcProvider, settings: &str, grants: &str) {
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
fn kubectl_acting(env: &UserEnv, config: &std::path::Path, act: impl Fn(&str) + Send + 'static) -> Run {
    kubectl_acting_with(env, config, None, act)
}

/// [`kubectl_acting`] with `keyring` as the session's Secret Service.
fn kubectl_acting_with(
    env: &UserEnv,
    config: &std::path::Path,
    keyring: Option<&SecretService>,
    act: impl Fn(&str) + Send + 'static,
) -> Run {
    let mut command = kubectl::command(env, "1.33", &config.to_path_buf(), &["get", "--raw", "/version"]);
    if let Some(keyring) = keyring {
        keyring.attach(&mut command);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kubectl");
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
fn device_approver(provider: &OidcProvider, login: &'static str) -> impl Fn(&str) + Send + 'static {
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
    // The state file, not its lock file.
    let file = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))?;
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
fn two_clusters_sharing_a_profile_refresh_at_once_without_spending_a_rotated_token_twice() {
    let provider = OidcProvider::start(&[("OIDC_ID_TOKEN_TTL", "2")]);
    let env = UserEnv::new();
    let webhook = Webhook::start(&env, &jwt_validator(&provider, &provider.issuer, ""));
    let (east, east_users) = ApiServer::with_webhook(&webhook);
    let (west, west_users) = ApiServer::with_webhook(&webhook);
    oidc_profile(&env, &provider, "client-id = \"public\"\nflow = \"device\"", "");
    // One profile, two clusters: the cached credentials (and their locks) are
    // per cluster, the refresh token is the profile's.
    let east_config = kubectl::kubeconfig(&env, &east, &Exec::v1(&["get", "--provider", "idp"]));
    let west_config = kubectl::kubeconfig(&env, &west, &Exec::v1(&["get", "--provider", "idp"]));
    let login = kubectl_acting(&env, &east_config, device_approver(&provider, "alice"));
    assert_eq!(login.code, Some(0), "{}", login.stderr);
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(2500));
        // Every credential has expired: each cluster's kubectl refreshes, at once.
        let runs: Vec<Run> = std::thread::scope(|scope| {
            let runs: Vec<_> = [&east_config, &west_config, &west_config, &east_config]
                .into_iter()
                .map(|config| scope.spawn(|| kubectl_acting(&env, config, |_| {})))
                .collect();
            runs.into_iter().map(|run| run.join().unwrap()).collect()
        });
        for run in &runs {
            assert_eq!(run.code, Some(0), "round {round}: {}\n{}", run.stderr, webhook.log());
            assert!(!run.stderr.contains("To log in"), "no new login: {}", run.stderr);
        }
    }
    assert!(east_users.lock().unwrap().iter().chain(west_users.lock().unwrap().iter()).all(|u| u == "oidc:alice"));
    stored_refresh_token(&env).expect("the last rotated refresh token is kept");
}

#[test]
fn refresh_tokens_move_into_the_keyring_and_logout_removes_them_from_everywhere() {
    let keyring = SecretService::start();
    let provider = OidcProvider::start(&[("OIDC_ID_TOKEN_TTL", "2")]);
    let env = UserEnv::new();
    let cluster = cluster(&env, &provider);
    oidc_profile(&env, &provider, "client-id = \"public\"\nflow = \"device\"", "");
    let config = kubectl::kubeconfig(&env, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    // No keyring in this session: auto keeps files.
    let run = kubectl_acting(&env, &config, device_approver(&provider, "alice"));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let in_file = stored_refresh_token(&env).expect("a refresh token in the state file");
    // cache clear keeps refresh tokens.
    let clear = env.run(&["cache", "clear", "--provider", "idp"]);
    assert!(clear.stderr.contains("removed 1 cached credential of provider `idp`"), "{}", clear.stderr);
    assert_eq!(stored_refresh_token(&env).as_deref(), Some(in_file.as_str()));

    // With a keyring: the silent refresh spends the file's token and keeps
    // the rotated one in the keyring; the file goes.
    std::thread::sleep(Duration::from_millis(2500));
    let run = kubectl_acting_with(&env, &config, Some(&keyring), |_| {});
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("To log in"), "a silent refresh: {}", run.stderr);
    assert_eq!(stored_refresh_token(&env), None, "no state file is left");
    let state = keyring.secrets(&[("application", "credbroker"), ("kind", "state"), ("profile", "idp")]);
    assert_eq!(state.len(), 1, "{}", keyring.search(&[("application", "credbroker")]));
    let map: serde_json::Map<String, Value> = serde_json::from_str(&state[0]).unwrap();
    let encoded = map.iter().find(|(k, _)| k.starts_with("refresh-token:")).expect("a refresh token").1;
    let in_keyring =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap()).unwrap())
            .unwrap();
    crate::harness::audit::secret(in_keyring.clone());
    assert_ne!(in_keyring, in_file, "rotated");
    let id_token = cluster.apiserver.tokens_seen().last().cloned().unwrap();
    for secret in [&in_keyring, &id_token] {
        let on_disk: Vec<_> = walk(env.home()).into_iter().filter(|f| contains(f, secret)).collect();
        assert!(on_disk.is_empty(), "a secret on disk with storage = keyring: {on_disk:?}");
    }
    assert_eq!(keyring.secrets(&[("application", "credbroker"), ("kind", "credential")]).len(), 1);

    let logout = Run::of(keyring.attach(&mut env.credbroker(&["logout", "--provider", "idp"])).output().unwrap());
    assert_eq!(logout.code, Some(0), "{}", logout.stderr);
    assert_eq!(
        logout.stdout,
        "logged out of `idp`:\n  removed cached credentials: 1 keyring item\n  removed plugin state (refresh tokens): 1 keyring item\n"
    );
    assert_eq!(keyring.secrets(&[("application", "credbroker")]), Vec::<String>::new());
    let again = Run::of(keyring.attach(&mut env.credbroker(&["logout", "--all"])).output().unwrap());
    assert_eq!(again.stdout, "nothing to remove for every provider\n");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    files
}

fn contains(file: &std::path::Path, needle: &str) -> bool {
    std::fs::read(file).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

#[test]
fn logout_with_files_removes_the_credential_and_the_refresh_token() {
    let provider = OidcProvider::start(&[]);
    let env = UserEnv::new();
    let cluster = cluster(&env, &provider);
    oidc_profile(&env, &provider, "client-id = \"public\"\nflow = \"device\"", "");
    let config = kubectl::kubeconfig(&env, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    assert_eq!(kubectl_acting(&env, &config, device_approver(&provider, "alice")).code, Some(0));
    let refresh = stored_refresh_token(&env).expect("a refresh token");
    let logout = env.run(&["logout", "--provider", "idp"]);
    assert_eq!(logout.code, Some(0), "{}", logout.stderr);
    assert!(
        logout.stdout.starts_with(
            "logged out of `idp`:\n  removed cached credentials: 1 file\n  removed plugin state (refresh tokens): 1 file\n"
        ),
        "{}",
        logout.stdout
    );
    assert!(logout.stdout.contains("the OS keyring was not searched: no OS keyring answers"), "{}", logout.stdout);
    assert_eq!(stored_refresh_token(&env), None);
    assert!(walk(env.home()).iter().all(|f| !contains(f, &refresh)));
    let none = env.run(&["logout"]);
    assert!(none.error().contains("--provider <PROVIDER>|--all"), "{}", none.stderr);
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
        (format!("{}.{}.{}", parts[0], encode(&tampered), parts[2]), "invalid token: InvalidSignature"),
        (format!("{}.{}.{}", parts[0], encode(&wrong_audience), parts[2]), "invalid token"),
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
    assert!(answer["status"]["error"].as_str().unwrap().contains("is not https://idp.evil.example"), "{answer}");

    std::thread::sleep(Duration::from_millis(3100));
    let (_, answer) = webhook.review("v1", &good, &[]);
    assert!(answer["status"]["error"].as_str().unwrap().contains("ExpiredSignature"), "{answer}");
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
