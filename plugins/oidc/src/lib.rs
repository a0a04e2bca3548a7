//! The `oidc` provider: Kubernetes credentials from an OpenID Connect provider
//! (Entra, Google, Okta, Keycloak, Dex...), the way kubelogin gets them, inside
//! the sandbox.
//!
//! Flows (`flow` setting): `auth-code` (the default; authorization code with
//! PKCE through a loopback redirect, needs `grants.redirect-listener`), `device`
//! (RFC 8628: the code is shown on stderr, the plugin polls politely), and
//! `client-credentials` (for CI and robots). A refresh token, when the provider
//! gives one, is kept in the plugin's state between kubectl runs and used
//! first; rotated refresh tokens replace the old one. A rejected refresh falls
//! back to a fresh login when the run is interactive (or needs no user), and
//! is a clear error otherwise.
//!
//! Settings: `issuer` (required), `client-id` (required), `client-secret`
//! (optional; use `env:`/`file:`), `flow`, `scopes` (default
//! `openid profile email groups offline_access`; none for client credentials),
//! `token` (`id-token`, the default, or `access-token`; client credentials
//! always give an access token), `resource` (an RFC 8707 resource indicator),
//! `login-hint`, `timeout-seconds` (how long to wait for the user, default 300).

use base64::Engine as _;
use credbroker_sdk::loopback::{RedirectListener, query_value};
use credbroker_sdk::{
    Credential, CredentialRequest, Error, Provider, base64url, config, http, log, prompt, random_token, state,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

struct Oidc;

/// What the discovery document says.
struct Endpoints {
    authorization: Option<String>,
    token: String,
    device_authorization: Option<String>,
}

struct Settings {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    flow: String,
    scopes: String,
    use_access_token: bool,
    resource: Option<String>,
    login_hint: Option<String>,
    timeout_ms: u32,
}

fn settings() -> Result<Settings, Error> {
    let flow = config::get("flow").unwrap_or_else(|| "auth-code".into());
    if !matches!(flow.as_str(), "auth-code" | "device" | "client-credentials") {
        return Err(Error::misconfigured(format!(
            "setting `flow` must be auth-code, device or client-credentials, not `{flow}`"
        )));
    }
    let default_scopes = if flow == "client-credentials" { "" } else { "openid profile email groups offline_access" };
    let token = config::get("token").unwrap_or_else(|| "id-token".into());
    if !matches!(token.as_str(), "id-token" | "access-token") {
        return Err(Error::misconfigured(format!("setting `token` must be id-token or access-token, not `{token}`")));
    }
    Ok(Settings {
        issuer: config::require("issuer")?.trim_end_matches('/').to_string(),
        client_id: config::require("client-id")?,
        client_secret: config::get("client-secret").filter(|s| !s.is_empty()),
        use_access_token: token == "access-token" || flow == "client-credentials",
        scopes: config::get("scopes").unwrap_or_else(|| default_scopes.into()),
        resource: config::get("resource").filter(|r| !r.is_empty()),
        login_hint: config::get("login-hint").filter(|h| !h.is_empty()),
        timeout_ms: config::parse_or::<u32>("timeout-seconds", 300)?.saturating_mul(1000),
        flow,
    })
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

/// Turn a token response into a credential; keep a new refresh token.
fn credential_from(settings: &Settings, response: &Value, nonce: Option<&str>) -> Result<Credential, Error> {
    let key = if settings.use_access_token { "access_token" } else { "id_token" };
    let token = response[key].as_str().ok_or_else(|| {
        Error::failed(format!("the token response has no {key}; check the scopes (id-token needs `openid`)"))
    })?;
    log::mark_secret(token);
    if let Some(refresh) = response["refresh_token"].as_str() {
        log::mark_secret(refresh);
        state::set(&refresh_key(settings), refresh)?;
    }
    let claims = claims(token);
    if let (Some(expected), false) = (nonce, settings.use_access_token) {
        let got = claims.as_ref().and_then(|c| c["nonce"].as_str().map(str::to_string));
        if got.as_deref() != Some(expected) {
            return Err(Error::denied("the ID token's nonce does not match the login request"));
        }
    }
    let credential = Credential::token(token);
    let expiry = claims.as_ref().and_then(|c| c["exp"].as_i64());
    Ok(match (expiry, response["expires_in"].as_i64()) {
        (Some(exp), _) => credential.expires_at(exp),
        (None, Some(seconds)) => credential.expires_in(seconds),
        (None, None) => credential,
    })
}

fn refresh_key(settings: &Settings) -> String {
    format!("refresh-token:{}:{}", settings.issuer, settings.client_id)
}

fn oauth_error(status: u16, body: &Value) -> Error {
    let code = body["error"].as_str().unwrap_or("");
    let description = body["error_description"].as_str().unwrap_or("");
    let message = format!("the token endpoint answered {status} {code}: {description}");
    match (status, code) {
        (_, "invalid_client" | "unauthorized_client" | "invalid_scope" | "unsupported_grant_type") => {
            Error::misconfigured(message)
        }
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
fn refresh(settings: &Settings, endpoints: &Endpoints) -> Result<Refreshed, Error> {
    let Some(refresh_token) = state::get_string(&refresh_key(settings)) else { return Ok(Refreshed::Nothing) };
    log::mark_secret(&refresh_token);
    let mut fields = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token.as_str())];
    if !settings.scopes.is_empty() {
        fields.push(("scope", settings.scopes.as_str()));
    }
    let (status, body) = post_form(settings, &endpoints.token, &fields)?;
    if status == 200 {
        log::debug("refreshed the token");
        return credential_from(settings, &body, None).map(Refreshed::Credential);
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
        (200, body) => credential_from(settings, &body, None),
        (status, body) => Err(oauth_error(status, &body)),
    }
}

fn auth_code(settings: &Settings, endpoints: &Endpoints) -> Result<Credential, Error> {
    let authorization = endpoints
        .authorization
        .as_deref()
        .ok_or_else(|| Error::misconfigured("the provider has no authorization endpoint; use flow = device"))?;
    let listener = RedirectListener::listen()?;
    let redirect_uri = listener.redirect_uri();
    let (state_value, nonce, verifier) = (random_token(24), random_token(24), random_token(48));
    let challenge = base64url(&Sha256::digest(verifier.as_bytes()));
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", settings.client_id.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("scope", settings.scopes.as_str()),
        ("state", state_value.as_str()),
        ("nonce", nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    if let Some(hint) = &settings.login_hint {
        params.push(("login_hint", hint));
    }
    if let Some(resource) = &settings.resource {
        params.push(("resource", resource));
    }
    let url = http::with_query(authorization, &params);
    let redirect = listener.wait(&url, settings.timeout_ms)?;
    if query_value(&redirect, "state").as_deref() != Some(state_value.as_str()) {
        return Err(Error::denied("the redirect's state does not match the login request (possible CSRF)"));
    }
    if let Some(error) = query_value(&redirect, "error") {
        let description = query_value(&redirect, "error_description").unwrap_or_default();
        return Err(Error::denied(format!("the login was refused: {error} {description}")));
    }
    let code = query_value(&redirect, "code").ok_or_else(|| Error::failed("the redirect carries no code"))?;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    match post_form(settings, &endpoints.token, &fields)? {
        (200, body) => credential_from(settings, &body, Some(&nonce)),
        (status, body) => Err(oauth_error(status, &body)),
    }
}

fn device(settings: &Settings, endpoints: &Endpoints) -> Result<Credential, Error> {
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
            (200, _) => return credential_from(settings, &body, None),
            (_, Some("authorization_pending")) => {}
            // RFC 8628 3.5: back off by 5 seconds each time the server asks.
            (_, Some("slow_down")) => interval += 5,
            (_, Some("expired_token")) => return Err(Error::denied("the device code expired; run the command again")),
            _ => return Err(oauth_error(status, &body)),
        }
    }
}

impl Provider for Oidc {
    fn get_credential(request: CredentialRequest) -> Result<Credential, Error> {
        let settings = settings()?;
        let endpoints = discover(&settings)?;
        if settings.flow == "client-credentials" {
            return client_credentials(&settings, &endpoints);
        }
        match refresh(&settings, &endpoints)? {
            Refreshed::Credential(credential) => return Ok(credential),
            // Do not start a login nobody is watching: say what happened.
            Refreshed::Rejected if !request.interactive => {
                return Err(Error::denied(
                    "the stored refresh token was rejected (expired or revoked) and this run is not interactive; \
                     run a kubectl command from a terminal to log in again",
                ));
            }
            Refreshed::Rejected | Refreshed::Nothing => {}
        }
        match settings.flow.as_str() {
            "device" => device(&settings, &endpoints),
            _ => auth_code(&settings, &endpoints).map_err(|e| match e {
                Error::Misconfigured(m) if m.contains("redirect-listener") => {
                    Error::misconfigured(format!("{m}; or use flow = device, which needs no listener"))
                }
                other => other,
            }),
        }
    }
}

credbroker_sdk::export_provider!(Oidc);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_claims_are_read_without_padding() {
        let payload = base64url(br#"{"sub":"alice","exp":1700000000}"#);
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
        assert!(matches!(oauth_error(503, &serde_json::json!({})), Error::Unavailable(_)));
    }
}
