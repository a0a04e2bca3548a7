//! The `oidc` provider: Kubernetes credentials from an OpenID Connect provider
//! (Entra, Google, Okta, Keycloak, Dex...), the way kubelogin gets them, inside
//! the sandbox.
//!
//! Flows (`flow` setting): `auth-code` (the default; authorization code with
//! PKCE through a loopback redirect, needs `grants.redirect-listener`),
//! `auth-code-keyboard` (the same login shown as a URL; the user pastes the
//! code back, for SSH sessions without a browser), `device` (RFC 8628: the
//! code is shown on stderr, the plugin polls politely), `password` (the
//! resource owner password grant, for providers that still require it;
//! discouraged), `client-credentials` (for CI and robots) and
//! `token-exchange` (RFC 8693: a subject token exchanged for one scoped to an
//! audience, e.g. one per cluster). A refresh token, when the provider gives
//! one, is kept in the plugin's state between kubectl runs and used first;
//! rotated refresh tokens replace the old one. A rejected refresh falls back
//! to a fresh login when the run is interactive (or needs no user), and is a
//! clear error otherwise.
//!
//! Settings are read and checked in [`settings`]; the reference is
//! `docs/plugins/oidc.md`.

pub mod settings;

use base64::Engine as _;
use credbroker_sdk::loopback::{RedirectListener, query_value};
use credbroker_sdk::{
    Credential, CredentialRequest, CredentialSecret, Error, Provider, files, http, log, prompt, random_token, state,
};
use serde_json::Value;

use self::settings::{Exchange, Flow, Settings, Subject, TokenKind};

struct Oidc;

/// What the discovery document says.
struct Endpoints {
    authorization: Option<String>,
    token: String,
    device_authorization: Option<String>,
}

fn discover(settings: &Settings) -> Result<Endpoints, Error> {
    let url = format!("{}/.well-known/openid-configuration", settings.issuer);
    let response = http::get(&url)?;
    if !response.is_success() {
        return Err(Error::unavailable(format!("discovery at {url} answered {}", response.status)));
    }
    let document: Value = serde_json::from_slice(&response.body)
        .map_err(|e| Error::failed(format!("discovery at {url} is not JSON: {e}")))?;
    if document["issuer"].as_str().map(|i| i.trim_end_matches('/')) != Some(settings.issuer.as_str()) {
        return Err(Error::misconfigured(format!(
            "the discovery document names issuer {}, not {}",
            document["issuer"], settings.issuer
        )));
    }
    let text = |key: &str| document[key].as_str().map(str::to_string);
    Ok(Endpoints {
        authorization: text("authorization_endpoint"),
        token: text("token_endpoint").ok_or_else(|| Error::failed("the discovery document has no token_endpoint"))?,
        device_authorization: text("device_authorization_endpoint"),
    })
}

/// A POST to the token endpoint (or the device endpoint) with client
/// authentication: HTTP Basic with a secret, `client_id` in the form without.
fn post_form(settings: &Settings, url: &str, fields: &[(&str, &str)]) -> Result<(u16, Value), Error> {
    let mut fields: Vec<(&str, &str)> = fields.to_vec();
    let mut request = http::Request::post(url).header("accept", "application/json");
    match &settings.client_secret {
        Some(secret) => {
            let credentials = format!("{}:{}", http::form_encode(&settings.client_id), http::form_encode(secret));
            request = request.header("authorization", &format!("Basic {}", base64_std(credentials.as_bytes())));
        }
        None => fields.push(("client_id", &settings.client_id)),
    }
    if let Some(resource) = &settings.resource {
        fields.push(("resource", resource));
    }
    let response = request.form(&fields).send()?;
    let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    Ok((response.status, body))
}

fn base64_std(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The claims of a JWT, without checking its signature (the API server does).
fn claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = decode_base64url(payload)?;
    serde_json::from_slice(&bytes).ok()
}

fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// `token` as a credential expiring when its `exp` says, else after the
/// response's `expires_in`.
fn expiring(token: &str, response: &Value) -> Credential {
    let credential = Credential::token(token);
    let expiry = claims(token).and_then(|c| c["exp"].as_i64());
    match (expiry, response["expires_in"].as_i64()) {
        (Some(exp), _) => credential.expires_at(exp),
        (None, Some(seconds)) => credential.expires_in(seconds),
        (None, None) => credential,
    }
}

/// Turn a login's token response into a credential (its `kind` token); keep
/// a new refresh token.
fn credential_from(
    settings: &Settings,
    kind: TokenKind,
    response: &Value,
    nonce: Option<&str>,
) -> Result<Credential, Error> {
    let key = kind.field();
    let token = response[key].as_str().ok_or_else(|| {
        Error::failed(format!("the token response has no {key}; check the scopes (id-token needs `openid`)"))
    })?;
    log::mark_secret(token);
    if let Some(refresh) = response["refresh_token"].as_str() {
        log::mark_secret(refresh);
        state::set(&refresh_key(settings), refresh)?;
    }
    if let (Some(expected), TokenKind::Id) = (nonce, kind) {
        let got = claims(token).and_then(|c| c["nonce"].as_str().map(str::to_string));
        if got.as_deref() != Some(expected) {
            return Err(Error::denied("the ID token's nonce does not match the login request"));
        }
    }
    Ok(expiring(token, response))
}

fn refresh_key(settings: &Settings) -> String {
    format!("refresh-token:{}:{}", settings.issuer, settings.client_id)
}

fn oauth_error(status: u16, body: &Value) -> Error {
    let code = body["error"].as_str().unwrap_or("");
    let description = body["error_description"].as_str().unwrap_or("");
    let message = format!("the token endpoint answered {status} {code}: {description}");
    match (status, code) {
        (
            _,
            "invalid_client" | "unauthorized_client" | "invalid_scope" | "unsupported_grant_type" | "invalid_target",
        ) => Error::misconfigured(message),
        (_, "invalid_grant" | "access_denied") => Error::denied(message),
        (500..=599, _) => Error::unavailable(message),
        _ => Error::failed(message),
    }
}

/// What became of the stored refresh token.
enum Refreshed {
    /// There was none.
    Nothing,
    /// The provider rejected it (it is forgotten now).
    Rejected,
    /// A fresh credential.
    Credential(Credential),
}

/// Use the stored refresh token, if any.
fn refresh(settings: &Settings, endpoints: &Endpoints, kind: TokenKind) -> Result<Refreshed, Error> {
    let Some(refresh_token) = state::get_string(&refresh_key(settings)) else { return Ok(Refreshed::Nothing) };
    log::mark_secret(&refresh_token);
    let mut fields = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token.as_str())];
    if !settings.scopes.is_empty() {
        fields.push(("scope", settings.scopes.as_str()));
    }
    let (status, body) = post_form(settings, &endpoints.token, &fields)?;
    if status == 200 {
        log::debug("refreshed the token");
        return credential_from(settings, kind, &body, None).map(Refreshed::Credential);
    }
    if body["error"] == "invalid_grant" {
        log::info("the refresh token was rejected; a new login is needed");
        state::delete(&refresh_key(settings))?;
        return Ok(Refreshed::Rejected);
    }
    Err(oauth_error(status, &body))
}

fn client_credentials(settings: &Settings, endpoints: &Endpoints) -> Result<Credential, Error> {
    let mut fields = vec![("grant_type", "client_credentials")];
    if !settings.scopes.is_empty() {
        fields.push(("scope", settings.scopes.as_str()));
    }
    match post_form(settings, &endpoints.token, &fields)? {
        (200, body) => credential_from(settings, TokenKind::Access, &body, None),
        (status, body) => Err(oauth_error(status, &body)),
    }
}

/// One authorization-code login in the making: its secrets and its URL.
struct Authorization {
    url: String,
    state: String,
    nonce: String,
    verifier: String,
}

/// The authorization request of a code login redirecting to `redirect_uri`,
/// with fresh `state`, `nonce` and PKCE verifier.
fn authorization(settings: &Settings, endpoints: &Endpoints, redirect_uri: &str) -> Result<Authorization, Error> {
    let endpoint = endpoints
        .authorization
        .as_deref()
        .ok_or_else(|| Error::misconfigured("the provider has no authorization endpoint; use flow = device"))?;
    let (state_value, nonce, verifier) = (random_token(24), random_token(24), random_token(48));
    let url = authorization_url(endpoint, settings, redirect_uri, &state_value, &nonce, &verifier);
    Ok(Authorization { url, state: state_value, nonce, verifier })
}

/// The URL of an authorization request: the standard parameters, then the
/// operator's `auth-params`.
fn authorization_url(
    endpoint: &str,
    settings: &Settings,
    redirect_uri: &str,
    state_value: &str,
    nonce: &str,
    verifier: &str,
) -> String {
    let challenge = settings.pkce.challenge(verifier);
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", settings.client_id.as_str()),
        ("redirect_uri", redirect_uri),
        ("scope", settings.scopes.as_str()),
        ("state", state_value),
        ("nonce", nonce),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", settings.pkce.method()),
    ];
    if let Some(hint) = &settings.login_hint {
        params.push(("login_hint", hint));
    }
    if let Some(resource) = &settings.resource {
        params.push(("resource", resource));
    }
    params.extend(settings.auth_params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    http::with_query(endpoint, &params)
}

/// Redeem an authorization code (RFC 6749 4.1.3 with the PKCE verifier).
fn redeem(
    settings: &Settings,
    endpoints: &Endpoints,
    kind: TokenKind,
    login: &Authorization,
    code: &str,
    redirect_uri: &str,
) -> Result<Credential, Error> {
    log::mark_secret(code);
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", login.verifier.as_str()),
    ];
    match post_form(settings, &endpoints.token, &fields)? {
        (200, body) => credential_from(settings, kind, &body, Some(&login.nonce)),
        (status, body) => Err(oauth_error(status, &body)),
    }
}

fn auth_code(settings: &Settings, endpoints: &Endpoints, kind: TokenKind) -> Result<Credential, Error> {
    let listener = RedirectListener::listen()?;
    let redirect_uri = listener.redirect_uri();
    let login = authorization(settings, endpoints, &redirect_uri)?;
    let redirect = listener.wait(&login.url, settings.timeout_ms)?;
    if query_value(&redirect, "state").as_deref() != Some(login.state.as_str()) {
        return Err(Error::denied("the redirect's state does not match the login request (possible CSRF)"));
    }
    if let Some(error) = query_value(&redirect, "error") {
        let description = query_value(&redirect, "error_description").unwrap_or_default();
        return Err(Error::denied(format!("the login was refused: {error} {description}")));
    }
    let code = query_value(&redirect, "code").ok_or_else(|| Error::failed("the redirect carries no code"))?;
    redeem(settings, endpoints, kind, &login, &code, &redirect_uri)
}

/// The code login without a browser here: the URL is shown, the user opens it
/// anywhere and pastes back the code (or the address the page ended on).
fn auth_code_keyboard(
    settings: &Settings,
    endpoints: &Endpoints,
    kind: TokenKind,
    interactive: bool,
) -> Result<Credential, Error> {
    if !interactive {
        return Err(Error::denied(
            "flow = auth-code-keyboard needs a terminal to paste the code into, and this run is not interactive; \
             run the kubectl command from a terminal, or use flow = device",
        ));
    }
    let redirect_uri = settings.keyboard_redirect_uri.as_str();
    let login = authorization(settings, endpoints, redirect_uri)?;
    prompt::show(&format!(
        "\n  Open this URL in a browser (on any machine) to log in:\n\n      {}\n\n  \
         then paste the code it shows, or the whole address it ends on.\n",
        login.url
    ))?;
    let answer = prompt::text("Code:")?;
    log::mark_secret(answer.trim());
    let code = settings::pasted_code(&answer, &login.state)?;
    redeem(settings, endpoints, kind, &login, &code, redirect_uri)
}

fn device(settings: &Settings, endpoints: &Endpoints, kind: TokenKind) -> Result<Credential, Error> {
    let url = endpoints.device_authorization.as_deref().ok_or_else(|| {
        Error::misconfigured("the provider has no device authorization endpoint; use flow = auth-code")
    })?;
    let mut fields = vec![("scope", settings.scopes.as_str())];
    if let Some(hint) = &settings.login_hint {
        fields.push(("login_hint", hint));
    }
    let (status, body) = post_form(settings, url, &fields)?;
    if status != 200 {
        return Err(oauth_error(status, &body));
    }
    let text = |key: &str| body[key].as_str().map(str::to_string);
    let device_code = text("device_code").ok_or_else(|| Error::failed("no device_code in the answer"))?;
    log::mark_secret(&device_code);
    let user_code = text("user_code").unwrap_or_default();
    let verification = text("verification_uri").unwrap_or_default();
    let mut message =
        format!("\n  To log in, open\n\n      {verification}\n\n  and enter the code\n\n      {user_code}\n");
    if let Some(complete) = text("verification_uri_complete") {
        message.push_str(&format!("\n  (or open {complete})\n"));
    }
    prompt::show(&message)?;
    let mut interval = body["interval"].as_u64().unwrap_or(5).max(1);
    let expires_in = body["expires_in"].as_u64().unwrap_or(600);
    let started = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(interval));
        if started.elapsed().as_secs() > expires_in {
            return Err(Error::denied("the device code expired before the login was completed"));
        }
        let fields =
            [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", device_code.as_str())];
        let (status, body) = post_form(settings, &endpoints.token, &fields)?;
        match (status, body["error"].as_str()) {
            (200, _) => return credential_from(settings, kind, &body, None),
            (_, Some("authorization_pending")) => {}
            // RFC 8628 3.5: back off by 5 seconds each time the server asks.
            (_, Some("slow_down")) => interval += 5,
            (_, Some("expired_token")) => return Err(Error::denied("the device code expired; run the command again")),
            _ => return Err(oauth_error(status, &body)),
        }
    }
}

/// The resource owner password grant (RFC 6749 4.3): `username` and
/// `password` from the settings, else asked on the terminal.
fn password(
    settings: &Settings,
    endpoints: &Endpoints,
    kind: TokenKind,
    interactive: bool,
) -> Result<Credential, Error> {
    let not_set = |what: &str| {
        Error::misconfigured(format!(
            "flow = password needs a {what}: set `{what}` (for a password use env:NAME or file:PATH), \
             or run the kubectl command from a terminal to be asked"
        ))
    };
    let username = match (&settings.username, interactive) {
        (Some(username), _) => username.clone(),
        (None, true) => prompt::text("Username:")?.trim().to_string(),
        (None, false) => return Err(not_set("username")),
    };
    let password = match (&settings.password, interactive) {
        (Some(password), _) => password.clone(),
        (None, true) => prompt::secret(&format!("Password for {username}:"))?,
        (None, false) => return Err(not_set("password")),
    };
    log::mark_secret(&password);
    let mut fields = vec![("grant_type", "password"), ("username", username.as_str()), ("password", password.as_str())];
    if !settings.scopes.is_empty() {
        fields.push(("scope", settings.scopes.as_str()));
    }
    match post_form(settings, &endpoints.token, &fields)? {
        (200, body) => credential_from(settings, kind, &body, None),
        (status, body) => Err(oauth_error(status, &body)),
    }
}

/// A person's token (`kind` of the token response) by `flow`: the stored
/// refresh token first, else a login.
fn login(
    settings: &Settings,
    endpoints: &Endpoints,
    flow: Flow,
    kind: TokenKind,
    interactive: bool,
) -> Result<Credential, Error> {
    match refresh(settings, endpoints, kind)? {
        Refreshed::Credential(credential) => return Ok(credential),
        // Do not start a login nobody is watching: say what happened.
        Refreshed::Rejected if !interactive => {
            return Err(Error::denied(
                "the stored refresh token was rejected (expired or revoked) and this run is not interactive; \
                 run a kubectl command from a terminal to log in again",
            ));
        }
        Refreshed::Rejected | Refreshed::Nothing => {}
    }
    match flow {
        Flow::Device => device(settings, endpoints, kind),
        Flow::AuthCodeKeyboard => auth_code_keyboard(settings, endpoints, kind, interactive),
        Flow::Password => password(settings, endpoints, kind, interactive),
        _ => auth_code(settings, endpoints, kind).map_err(|e| match e {
            Error::Misconfigured(m) if m.contains("redirect-listener") => {
                Error::misconfigured(format!("{m}; or use flow = device or auth-code-keyboard, which need no listener"))
            }
            other => other,
        }),
    }
}

/// The audience of a token exchange: the setting, else the `audience` of
/// the cluster's `client.authentication.k8s.io/exec` extension (so one
/// profile serves every cluster, each with its own audience).
fn exchange_audience(exchange: &Exchange, request: &CredentialRequest) -> Option<String> {
    exchange.audience.clone().or_else(|| {
        let config: Value = serde_json::from_str(request.cluster.as_ref()?.config.as_deref()?).ok()?;
        config["audience"].as_str().filter(|a| !a.is_empty()).map(str::to_string)
    })
}

/// RFC 8693: exchange the subject token for the token the credential is.
fn token_exchange(
    settings: &Settings,
    endpoints: &Endpoints,
    exchange: &Exchange,
    request: &CredentialRequest,
) -> Result<Credential, Error> {
    let subject = match &exchange.subject {
        Subject::Value(token) => token.trim().to_string(),
        Subject::File(path) => files::read_to_string(path)
            .map_err(|e| Error::from(e).with_context(&format!("subject-file {path}")))?
            .trim()
            .to_string(),
        Subject::Login(flow, kind) => match login(settings, endpoints, *flow, *kind, request.interactive)?.secret {
            CredentialSecret::Token(token) => token,
            CredentialSecret::ClientCertificate(_) => return Err(Error::failed("a login gave no token")),
        },
    };
    if subject.is_empty() {
        return Err(Error::misconfigured("the subject token of the exchange is empty"));
    }
    log::mark_secret(&subject);
    let audience = exchange_audience(exchange, request);
    let mut fields = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", subject.as_str()),
        ("subject_token_type", exchange.subject_token_type.as_str()),
    ];
    if let Some(audience) = &audience {
        fields.push(("audience", audience));
    }
    if let Some(requested) = &exchange.requested_token_type {
        fields.push(("requested_token_type", requested));
    }
    let (status, body) = post_form(settings, &endpoints.token, &fields)?;
    if status != 200 {
        return Err(oauth_error(status, &body));
    }
    // RFC 8693 2.2.1: the issued token is `access_token`, whatever its type.
    let token = body["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::failed("the token exchange answered without an access_token"))?;
    log::mark_secret(token);
    log::debug(&format!(
        "exchanged a {} for a {} (audience {})",
        exchange.subject_token_type,
        body["issued_token_type"].as_str().unwrap_or("token"),
        audience.as_deref().unwrap_or("none")
    ));
    Ok(expiring(token, &body))
}

/// Context for an error: `what: message`, keeping its case.
trait Context {
    fn with_context(self, what: &str) -> Self;
}

impl Context for Error {
    fn with_context(self, what: &str) -> Self {
        let message = format!("{what}: {}", self.message());
        match self {
            Error::Misconfigured(_) => Error::Misconfigured(message),
            Error::Denied(_) => Error::Denied(message),
            Error::Unavailable(_) => Error::Unavailable(message),
            Error::Throttled(_) => Error::Throttled(message),
            Error::Failed(_) => Error::Failed(message),
        }
    }
}

impl Provider for Oidc {
    fn get_credential(request: CredentialRequest) -> Result<Credential, Error> {
        let settings = settings::read()?;
        let endpoints = discover(&settings)?;
        match (settings.flow, &settings.exchange) {
            (Flow::ClientCredentials, _) => client_credentials(&settings, &endpoints),
            (Flow::TokenExchange, Some(exchange)) => token_exchange(&settings, &endpoints, exchange, &request),
            (Flow::TokenExchange, None) => Err(Error::failed("flow = token-exchange without a subject")),
            (flow, _) => login(&settings, &endpoints, flow, settings.token, request.interactive),
        }
    }
}

credbroker_sdk::export_provider!(Oidc);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Pkce;

    #[test]
    fn jwt_claims_are_read_without_padding() {
        let payload = credbroker_sdk::base64url(br#"{"sub":"alice","exp":1700000000}"#);
        let token = format!("e30.{payload}.sig");
        let claims = claims(&token).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["exp"], 1_700_000_000);
        assert_eq!(decode_base64url("YWJj").unwrap(), b"abc");
        assert_eq!(base64_std(b"client:secret"), "Y2xpZW50OnNlY3JldA==");
    }

    #[test]
    fn token_errors_are_classified() {
        assert!(matches!(oauth_error(400, &serde_json::json!({"error": "invalid_grant"})), Error::Denied(_)));
        assert!(matches!(oauth_error(401, &serde_json::json!({"error": "invalid_client"})), Error::Misconfigured(_)));
        assert!(matches!(oauth_error(400, &serde_json::json!({"error": "invalid_target"})), Error::Misconfigured(_)));
        assert!(matches!(oauth_error(503, &serde_json::json!({})), Error::Unavailable(_)));
    }

    fn example_settings() -> Settings {
        Settings {
            issuer: "https://idp.example".into(),
            client_id: "kubernetes".into(),
            client_secret: None,
            flow: Flow::AuthCodeKeyboard,
            scopes: "openid groups".into(),
            token: TokenKind::Id,
            resource: None,
            login_hint: Some("bob".into()),
            timeout_ms: 1000,
            keyboard_redirect_uri: settings::OOB_REDIRECT_URI.into(),
            auth_params: vec![("prompt".into(), "consent".into()), ("acr_values".into(), "urn:x silver".into())],
            pkce: Pkce::Plain,
            username: None,
            password: None,
            exchange: None,
        }
    }

    #[test]
    fn authorization_urls_carry_pkce_the_hint_and_the_extra_parameters_last() {
        let url = authorization_url(
            "https://idp.example/auth",
            &example_settings(),
            settings::OOB_REDIRECT_URI,
            "st",
            "no",
            "ver",
        );
        assert_eq!(
            url,
            "https://idp.example/auth?response_type=code&client_id=kubernetes\
             &redirect_uri=urn%3Aietf%3Awg%3Aoauth%3A2.0%3Aoob&scope=openid+groups&state=st&nonce=no\
             &code_challenge=ver&code_challenge_method=plain&login_hint=bob&prompt=consent&acr_values=urn%3Ax+silver"
        );
        let s256 = Settings { pkce: Pkce::S256, auth_params: Vec::new(), ..example_settings() };
        let url =
            authorization_url("https://idp.example/auth?tenant=1", &s256, "http://127.0.0.1:1/callback", "s", "n", "v");
        assert!(url.starts_with("https://idp.example/auth?tenant=1&response_type=code"), "{url}");
        assert!(
            url.contains(&format!("&code_challenge={}&code_challenge_method=S256&", Pkce::S256.challenge("v"))),
            "{url}"
        );
    }

    #[test]
    fn an_exchange_audience_comes_from_the_setting_or_the_cluster() {
        let exchange = |audience: Option<&str>| Exchange {
            subject: Subject::Value("t".into()),
            subject_token_type: "urn:ietf:params:oauth:token-type:access_token".into(),
            audience: audience.map(str::to_string),
            requested_token_type: None,
        };
        let request = |config: Option<&str>| CredentialRequest {
            settings: Vec::new(),
            interactive: false,
            cluster: Some(credbroker_sdk::ClusterInfo {
                server: "https://k".into(),
                certificate_authority_data: None,
                tls_server_name: None,
                insecure_skip_tls_verify: false,
                proxy_url: None,
                config: config.map(str::to_string),
            }),
        };
        let cluster = request(Some(r#"{"audience": "cluster-a"}"#));
        assert_eq!(exchange_audience(&exchange(None), &cluster).as_deref(), Some("cluster-a"));
        assert_eq!(exchange_audience(&exchange(Some("set")), &cluster).as_deref(), Some("set"));
        assert_eq!(exchange_audience(&exchange(None), &request(None)), None);
        assert_eq!(exchange_audience(&exchange(None), &request(Some("not json"))), None);
    }
}
