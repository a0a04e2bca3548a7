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
use crate::harness::terminal::on_terminal;
use crate::harness::webhook::Webhook;
use crate::harness::{Run, UserEnv, audit};

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
audiences = "public,confidential,keyboard,https://kubernetes.example"
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
        let on_disk = crate::harness::files_holding(env.home(), secret);
        assert!(on_disk.is_empty(), "a secret on disk with storage = keyring: {on_disk:?}");
    }
    assert_eq!(keyring.secrets(&[("application", "credbroker"), ("kind", "credential")]).len(), 1);

    let logout = Run::of(keyring.attach(&mut env.credbroker(&["logout", "--provider", "idp"])).output().unwrap());
    assert_eq!(logout.code, Some(0), "{}", logout.stderr);
    // The kernel keyring's copy of the credential lives as long as the ID
    // token, 2 s: it may be gone already.
    let said = |copy: &str| {
        format!(
            "logged out of `idp`:\n  removed cached credentials: 1 keyring item{copy}\n  removed plugin state (refresh tokens): 1 keyring item\n"
        )
    };
    assert!(logout.stdout == said("") || logout.stdout == said(", 1 copy in the kernel keyring"), "{}", logout.stdout);
    assert_eq!(keyring.secrets(&[("application", "credbroker")]), Vec::<String>::new());
    let again = Run::of(keyring.attach(&mut env.credbroker(&["logout", "--all"])).output().unwrap());
    assert_eq!(again.stdout, "nothing to remove for every provider\n");
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
    assert!(crate::harness::files_holding(env.home(), &refresh).is_empty());
    let none = env.run(&["logout"]);
    assert!(none.error().contains("--provider <PROVIDER>|--all"), "{}", none.stderr);
}

#[test]
fn a_rejected_refresh_without_a_terminal_is_a_clear_error() {
    // Lifetimes long enough for the first login to reach the API server on a
    // loaded machine, short enough to wait out.
    let provider = OidcProvider::start(&[("OIDC_ID_TOKEN_TTL", "3"), ("OIDC_REFRESH_TOKEN_TTL", "4")]);
    let env = UserEnv::new();
    let cluster = cluster(&env, &provider);
    oidc_profile(&env, &provider, "client-id = \"public\"\nflow = \"device\"", "");
    let config = kubectl::kubeconfig(&env, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    assert_eq!(kubectl_acting(&env, &config, device_approver(&provider, "alice")).code, Some(0));
    std::thread::sleep(Duration::from_millis(5000));
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

/// The claims of a JWT (unverified: the validator verified it).
fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The login URL of `issuer` when `line` (in the plugin's message frame) is it.
fn shown_login_url(line: &str, issuer: &str) -> Option<String> {
    let line = line.trim().trim_start_matches('\u{2502}').trim();
    line.starts_with(&format!("{issuer}/auth?")).then(|| line.to_string())
}

/// A person at the terminal for the keyboard flow: opens the URL the plugin
/// shows in a browser (as the URL's `login_hint`, else alice), and types what
/// `paste` makes of the out-of-band address and the code its page shows.
fn keyboard_user(
    provider: &OidcProvider,
    paste: fn(address: &str, code: &str) -> String,
) -> impl FnMut(&str, bool) -> Option<String> + Send + 'static {
    let (issuer, port, ca) = (provider.issuer.clone(), provider.port, provider.ca.cert_pem.clone());
    move |line, complete| {
        let url = shown_login_url(line, &issuer).filter(|_| complete)?;
        let browser = OidcProvider::attach(&issuer, port, &ca);
        let address = browser.follow_authorization(&url);
        let code = browser.out_of_band_code(&address);
        Some(paste(&address, &code))
    }
}

#[test]
fn the_keyboard_flow_on_a_terminal_takes_the_pasted_code_with_pkce_state_and_extra_parameters() {
    let provider = OidcProvider::start(&[]);
    let keyboard_profile = |env: &UserEnv| {
        oidc_profile(
            env,
            &provider,
            &format!(
                "client-id = \"keyboard\"\nflow = \"auth-code-keyboard\"\nredirect-uri = \"{}/oob\"\n\
                 auth-params = \"prompt=consent,acr_values=urn:credbroker:test:silver\"",
                provider.issuer
            ),
            "",
        )
    };
    let env = UserEnv::new();
    let cluster = cluster(&env, &provider);
    keyboard_profile(&env);
    let config = kubectl::kubeconfig(&env, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    let kubectl = kubectl::command(&env, "1.33", &config, &["get", "--raw", "/version"]);
    let screen = on_terminal(&kubectl, keyboard_user(&provider, |_, code| code.to_string()));
    assert_eq!(screen.code, Some(0), "{}\n{}", screen.stderr, cluster.webhook.log());
    assert!(screen.stderr.contains("Open this URL in a browser (on any machine) to log in"), "{}", screen.stderr);
    assert!(screen.stderr.contains("[credbroker: plugin `oidc` asks] Code:"), "{}", screen.stderr);
    assert!(
        screen.stderr.contains("&prompt=consent&acr_values=urn%3Acredbroker%3Atest%3Asilver"),
        "the extra parameters are in the URL shown: {}",
        screen.stderr
    );
    assert!(screen.stderr.contains("code_challenge_method=S256"), "{}", screen.stderr);
    assert_eq!(cluster.users.lock().unwrap().as_slice(), ["oidc:alice"]);
    let claims = claims_of(&cluster.apiserver.tokens_seen()[0]);
    assert_eq!(claims["aud"], "keyboard");
    assert_eq!(claims["acr"], "urn:credbroker:test:silver", "the provider honoured acr_values: {claims}");

    // Pasting the whole address works too; one carrying another login's
    // state is refused (and nothing is stored: the next run logs in again).
    let env = UserEnv::new();
    keyboard_profile(&env);
    let config = kubectl::kubeconfig(&env, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    let kubectl = kubectl::command(&env, "1.33", &config, &["get", "--raw", "/version"]);
    let forged = on_terminal(&kubectl, keyboard_user(&provider, |address, _| address.replace("state=", "state=x")));
    assert_ne!(forged.code, Some(0));
    assert!(forged.stderr.contains("the pasted address carries the state of another login"), "{}", forged.stderr);
    let pasted = on_terminal(&kubectl, keyboard_user(&provider, |address, _| address.to_string()));
    assert_eq!(pasted.code, Some(0), "{}", pasted.stderr);

    // Without a terminal there is nobody to paste the code: said at once.
    let env = UserEnv::new();
    keyboard_profile(&env);
    let config = kubectl::kubeconfig(&env, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    let run = kubectl::run(&env, "1.33", &config, &["get", "--raw", "/version"]);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("flow = auth-code-keyboard needs a terminal to paste the code into"), "{}", run.stderr);
}

#[test]
fn the_password_flow_from_settings_or_prompts_and_either_token() {
    let provider = OidcProvider::start(&[]);
    let env = UserEnv::new();
    let cluster = cluster(&env, &provider);
    let password_profile = |env: &UserEnv, extra: &str| {
        oidc_profile(env, &provider, &format!("client-id = \"public\"\nflow = \"password\"\n{extra}"), "")
    };
    password_profile(&env, "username = \"bob\"\npassword = \"env:OIDC_PASSWORD\"");
    let config = kubectl::kubeconfig(&env, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    let kubectl_with = |env: &UserEnv, password: &str| {
        Run::of(
            kubectl::command(env, "1.27", &config, &["get", "--raw", "/version"])
                .env("OIDC_PASSWORD", password)
                .output()
                .unwrap(),
        )
    };
    let run = kubectl_with(&env, "bob-password");
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, cluster.webhook.log());
    assert_eq!(cluster.users.lock().unwrap().as_slice(), ["oidc:bob"]);
    assert_eq!(claims_of(&cluster.apiserver.tokens_seen()[0])["aud"], "public", "the ID token by default");

    let wrong = UserEnv::new();
    password_profile(&wrong, "username = \"bob\"\npassword = \"env:OIDC_PASSWORD\"");
    let config = kubectl::kubeconfig(&wrong, &cluster.apiserver, &Exec::v1(&["get", "--provider", "idp"]));
    let run = Run::of(
        kubectl::command(&wrong, "1.27", &config, &["get", "--raw", "/version"])
            .env("OIDC_PASSWORD", "not-bobs-password")
            .output()
            .unwrap(),
    );
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("denied: the token endpoint answered 400 invalid_grant"), "{}", run.stderr);

    // Nothing configured and no terminal: what to set. On a terminal: asked,
    // the password without echo (the audit fails the test if it shows).
    let asked = UserEnv::new();
    password_profile(&asked, "token = \"access-token\"");
    let not_set = asked.run(&["get", "--provider", "idp"]);
    assert!(not_set.error().contains("flow = password needs a username: set `username`"), "{}", not_set.stderr);
    let mut typed_password = false;
    let screen = on_terminal(&asked.credbroker(&["get", "--provider", "idp"]), move |line, _| {
        if line.ends_with("asks] Username: ") {
            return Some("alice".into());
        }
        if line.ends_with("asks (hidden input)] Password for alice: ") && !typed_password {
            typed_password = true;
            // The host turns echo off right after showing the question.
            std::thread::sleep(Duration::from_millis(500));
            return Some("alice-password".into());
        }
        None
    });
    assert_eq!(screen.code, Some(0), "{}", screen.stderr);
    let token = screen.stderr.split("\"token\":\"").nth(1).and_then(|t| t.split('"').next()).expect("a token");
    let claims = claims_of(token);
    assert_eq!((&claims["sub"], &claims["aud"]), (&json!("alice"), &json!("https://kubernetes.example")), "{claims}");
}

/// A `jwt` validator for the tokens exchanged for `audience`.
fn exchanged_validator(provider: &OidcProvider, audience: &str) -> String {
    jwt_validator(provider, &provider.issuer, "").replace(
        "audiences = \"public,confidential,keyboard,https://kubernetes.example\"",
        &format!("audiences = {audience:?}"),
    )
}

#[test]
fn token_exchange_logs_in_once_and_gives_each_cluster_its_audience() {
    let provider = OidcProvider::start(&[]);
    let env = UserEnv::new();
    const AUDIENCES: [&str; 2] = ["https://cluster-a.example", "https://cluster-b.example"];
    let clusters: Vec<(Cluster, std::path::PathBuf)> = AUDIENCES
        .into_iter()
        .map(|audience| {
            // Each webhook has a PKI of its own (a UserEnv of its own).
            let webhook = Webhook::start(&UserEnv::new(), &exchanged_validator(&provider, audience));
            let (apiserver, users) = ApiServer::with_webhook(&webhook);
            // Each cluster's kubeconfig entry says which audience it wants.
            let exec = Exec {
                extension_config: Some(json!({ "audience": audience })),
                ..Exec::v1(&["get", "--provider", "idp"])
            };
            let config = kubectl::kubeconfig(&env, &apiserver, &exec);
            (Cluster { webhook, apiserver, users }, config)
        })
        .collect();
    oidc_profile(&env, &provider, "client-id = \"public\"\nflow = \"token-exchange\"\nsubject-flow = \"device\"", "");

    let first = kubectl_acting(&env, &clusters[0].1, device_approver(&provider, "alice"));
    assert_eq!(first.code, Some(0), "{}\n{}", first.stderr, clusters[0].0.webhook.log());
    assert!(first.stderr.contains("To log in, open"), "{}", first.stderr);
    let second = kubectl_acting(&env, &clusters[1].1, |_| {});
    assert_eq!(second.code, Some(0), "{}\n{}", second.stderr, clusters[1].0.webhook.log());
    assert!(!second.stderr.contains("To log in"), "one login for both clusters: {}", second.stderr);

    let mut tokens = Vec::new();
    for ((cluster, _), audience) in clusters.iter().zip(AUDIENCES) {
        assert_eq!(cluster.users.lock().unwrap().as_slice(), ["oidc:alice"]);
        let token = cluster.apiserver.tokens_seen()[0].clone();
        assert_eq!(claims_of(&token)["aud"], audience);
        let (_, answer) = cluster.webhook.review("v1", &token, &[]);
        assert_eq!(answer["status"]["user"]["groups"], json!(["oidc:devs", "oidc:ops"]), "{answer}");
        tokens.push(token);
    }
    // A cluster's token is no good at the other cluster.
    let (_, answer) = clusters[0].0.webhook.review("v1", &tokens[1], &[]);
    assert_eq!(answer["status"]["authenticated"], false, "{answer}");
}

#[test]
fn token_exchange_of_a_subject_token_file_needs_its_grant() {
    let provider = OidcProvider::start(&[]);
    let env = UserEnv::new();
    let subject = provider.client_credentials_token();
    audit::secret(subject.clone());
    let file = env.home().join("subject.jwt");
    std::fs::write(&file, format!("{subject}\n")).unwrap();
    let settings = format!(
        "client-id = \"confidential\"\nclient-secret = \"env:CLIENT_SECRET\"\nflow = \"token-exchange\"\n\
         subject-file = {file:?}\naudience = \"https://cluster-b.example\"",
        file = file.display().to_string()
    );
    let get = |env: &UserEnv| {
        Run::of(
            env.credbroker(&["get", "--provider", "idp", "--no-cache"])
                .env("CLIENT_SECRET", "confidential-secret")
                .output()
                .unwrap(),
        )
    };
    oidc_profile(&env, &provider, &settings, "");
    let denied = get(&env);
    let error = denied.error();
    assert!(error.contains(&format!("subject-file {}", file.display())), "{error}");
    assert!(error.contains("is not granted to this plugin (grants.files)"), "{error}");

    oidc_profile(&env, &provider, &settings, &format!("files = [{:?}]", file.display().to_string()));
    let claims = claims_of(&get(&env).token());
    assert_eq!((&claims["sub"], &claims["aud"]), (&json!("confidential"), &json!("https://cluster-b.example")));

    // An audience the provider does not serve is a configuration error.
    oidc_profile(
        &env,
        &provider,
        &settings.replace("cluster-b", "cluster-z"),
        &format!("files = [{:?}]", file.display().to_string()),
    );
    let refused = get(&env);
    assert!(
        refused.error().contains("misconfigured: the token endpoint answered 400 invalid_target"),
        "{}",
        refused.stderr
    );
}

/// A browser the operator names in `browser-command`: a script that hands
/// the URL it is opened at to the test, through `$HOME/opened-url`.
fn recording_browser(env: &UserEnv) -> std::path::PathBuf {
    let script = env.home().join("browser");
    std::fs::write(&script, "#!/bin/sh\nprintf '%s' \"$1\" > \"$HOME/opened-url.tmp\" && mv \"$HOME/opened-url.tmp\" \"$HOME/opened-url\"\n")
        .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    script
}

/// Wait for the recording browser to be opened; complete that login.
fn complete_opened_login(env: &UserEnv, provider: &OidcProvider) -> std::thread::JoinHandle<String> {
    let opened = env.home().join("opened-url");
    let (issuer, port, ca) = (provider.issuer.clone(), provider.port, provider.ca.cert_pem.clone());
    std::thread::spawn(move || {
        for _ in 0..600 {
            if let Ok(url) = std::fs::read_to_string(&opened) {
                std::fs::remove_file(&opened).unwrap();
                OidcProvider::attach(&issuer, port, &ca).complete_authorization(&url);
                return url;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the browser was never opened");
    })
}

#[test]
fn the_operators_browser_command_opens_the_login_and_pkce_plain_is_only_sent_when_asked() {
    let provider = OidcProvider::start(&[]);
    let env = UserEnv::new();
    let browser = recording_browser(&env);
    let grants = format!("redirect-listener = true\nbrowser-command = [{:?}]", browser.display().to_string());
    oidc_profile(&env, &provider, "client-id = \"public\"", &grants);
    let opened = complete_opened_login(&env, &provider);
    let run = env.run(&["get", "--provider", "idp", "--no-cache"]);
    let url = opened.join().unwrap();
    assert!(url.contains("&code_challenge_method=S256"), "{url}");
    assert_eq!(claims_of(&run.token())["sub"], "alice");

    // plain, when asked: this provider supports S256 only and says so.
    let env = UserEnv::new();
    let browser = recording_browser(&env);
    let grants = format!("redirect-listener = true\nbrowser-command = [{:?}]", browser.display().to_string());
    oidc_profile(&env, &provider, "client-id = \"public\"\npkce-method = \"plain\"", &grants);
    let opened = complete_opened_login(&env, &provider);
    let run = env.run(&["get", "--provider", "idp", "--no-cache"]);
    let url = opened.join().unwrap();
    assert!(url.contains("&code_challenge_method=plain"), "{url}");
    assert!(
        run.error().contains("the login was refused: invalid_request not supported value of code_challenge_method"),
        "{}",
        run.stderr
    );
}

/// The text of section `title` (`## title...` up to the next `## `) of setup's output.
fn section<'a>(output: &'a str, title: &str) -> &'a str {
    let start = output.find(&format!("## {title}")).unwrap_or_else(|| panic!("no section {title:?} in:\n{output}"));
    let body = &output[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body.split("\n## ").next().unwrap()
}

#[test]
fn setup_logs_in_once_and_prints_configuration_that_works_as_printed() {
    let provider = OidcProvider::start(&[]);
    let env = UserEnv::new();
    let ca = provider.ca_file().display().to_string();
    let args = ["setup", "--issuer", &provider.issuer, "--client-id", "public", "--flow", "device", "--ca-file", &ca];
    let mut child = env
        .credbroker(&[&args[..], &["--set", "login-hint=bob"]].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let approve = device_approver(&provider, "bob");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            approve(&line);
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let output = child.wait_with_output().unwrap();
    let run = Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into(),
        stderr: reader.join().unwrap(),
    };
    audit::check("credbroker setup", &run.stdout);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("To log in, open"), "the login talks on stderr: {}", run.stderr);
    let claims: Value = serde_json::from_str(section(&run.stdout, "The token's claims")).unwrap();
    assert_eq!(
        (&claims["sub"], &claims["aud"], &claims["iss"]),
        (&json!("bob"), &json!("public"), &json!(provider.issuer))
    );
    assert!(
        section(&run.stdout, "The kubeconfig user").contains("credbroker kubeconfig --provider oidc --context CONTEXT")
    );
    let who = section(&run.stdout, "Who the API server will see");
    assert!(who.contains("user oidc:bob@corp.example, groups oidc:devs"), "{who}");
    assert!(who.contains("kubectl create clusterrolebinding oidc-bob-corp-example-view --clusterrole=view --user=oidc:bob@corp.example"), "{who}");
    let state = env.home().join(".local/share/credbroker/state");
    assert!(std::fs::read_dir(&state).map_or(true, |mut d| d.next().is_none()), "setup keeps no refresh token");

    // The printed profile and validator, used as printed: kubectl gets in as
    // the user setup said the API server would see.
    env.write_config(section(&run.stdout, "The profile"));
    let validator = section(&run.stdout, "The validator");
    let webhook = Webhook::start(&UserEnv::new(), &format!("[cache]\npositive-ttl-seconds = 0\n\n{validator}"));
    let (apiserver, users) = ApiServer::with_webhook(&webhook);
    let config = kubectl::kubeconfig(&env, &apiserver, &Exec::v1(&["get", "--provider", "oidc"]));
    let run = kubectl_acting(&env, &config, device_approver(&provider, "bob"));
    assert_eq!(run.code, Some(0), "{}\n{}", run.stderr, webhook.log());
    assert_eq!(users.lock().unwrap().as_slice(), ["oidc:bob@corp.example"]);
    let (_, answer) = webhook.review("v1", &apiserver.tokens_seen()[0], &[]);
    assert_eq!(answer["status"]["user"]["groups"], json!(["oidc:devs"]));

    let literal = env.run(&[
        "setup",
        "--issuer",
        &provider.issuer,
        "--client-id",
        "confidential",
        "--client-secret",
        "confidential-secret",
    ]);
    assert!(literal.error().contains("--client-secret takes env:NAME or file:PATH"), "{}", literal.stderr);
}
