//! The `oidc` provider's settings: read from the profile, checked before any
//! request is made, with messages that name the setting to fix.

use credbroker_sdk::{Error, config};

/// How the user (or the client) gets a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Authorization code + PKCE through the host's loopback listener.
    AuthCode,
    /// Authorization code + PKCE; the user pastes the code back (no browser here).
    AuthCodeKeyboard,
    /// RFC 8628 device authorization.
    Device,
    /// The resource owner password credentials grant (discouraged).
    Password,
    /// The client's own credentials.
    ClientCredentials,
    /// RFC 8693: exchange a subject token for one scoped to an audience.
    TokenExchange,
}

impl Flow {
    const NAMES: &'static [(&'static str, Flow)] = &[
        ("auth-code", Flow::AuthCode),
        ("auth-code-keyboard", Flow::AuthCodeKeyboard),
        ("device", Flow::Device),
        ("password", Flow::Password),
        ("client-credentials", Flow::ClientCredentials),
        ("token-exchange", Flow::TokenExchange),
    ];

    /// The flow called `name` in settings.
    pub fn parse(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, flow)| *flow)
    }

    /// Its name in settings.
    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, f)| *f == self).map_or("?", |(n, _)| n)
    }

    /// Whether a person logs in (and a refresh token may be kept).
    pub fn is_login(self) -> bool {
        matches!(self, Self::AuthCode | Self::AuthCodeKeyboard | Self::Device | Self::Password)
    }
}

/// How the PKCE challenge is derived from the verifier (RFC 7636).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkce {
    /// `BASE64URL(SHA256(verifier))`: the default.
    S256,
    /// The verifier itself: only for providers that cannot do S256.
    Plain,
}

impl Pkce {
    /// Its `code_challenge_method`.
    pub fn method(self) -> &'static str {
        match self {
            Self::S256 => "S256",
            Self::Plain => "plain",
        }
    }

    /// The `code_challenge` for `verifier`.
    pub fn challenge(self, verifier: &str) -> String {
        use sha2::Digest as _;
        match self {
            Self::S256 => credbroker_sdk::base64url(&sha2::Sha256::digest(verifier.as_bytes())),
            Self::Plain => verifier.to_string(),
        }
    }
}

/// Which token of a login's token response is the credential (or, for a
/// token exchange, the subject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `id_token`.
    Id,
    /// `access_token`.
    Access,
}

impl TokenKind {
    /// Its field in a token response.
    pub fn field(self) -> &'static str {
        match self {
            Self::Id => "id_token",
            Self::Access => "access_token",
        }
    }
}

/// Where the subject token of a token exchange comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `subject-token`: a value (the host resolves `env:`/`file:` once).
    Value(String),
    /// `subject-file`: read through the `files` grant on every run (a
    /// projected service account token rotates in place).
    File(String),
    /// `subject-flow`: this profile's own login (its refresh token kept as
    /// usual), whose ID or access token (by `subject-type`) is exchanged.
    Login(Flow, TokenKind),
}

/// An RFC 8693 token exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The subject token's source.
    pub subject: Subject,
    /// `subject_token_type`, as a URN.
    pub subject_token_type: String,
    /// `audience`, when set (else the cluster's `audience`, if any).
    pub audience: Option<String>,
    /// `requested_token_type`, as a URN.
    pub requested_token_type: Option<String>,
}

/// Everything the provider is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub flow: Flow,
    pub scopes: String,
    /// Which token of a login's response is the credential.
    pub token: TokenKind,
    pub resource: Option<String>,
    pub login_hint: Option<String>,
    pub timeout_ms: u32,
    /// The redirect URI of `auth-code-keyboard`.
    pub keyboard_redirect_uri: String,
    /// Extra authorization-request parameters (`auth-params`).
    pub auth_params: Vec<(String, String)>,
    pub pkce: Pkce,
    /// `username` and `password` of the password flow, when set.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The token exchange, for `flow = token-exchange`.
    pub exchange: Option<Exchange>,
}

/// The out-of-band redirect URI of native apps (kubelogin's default for its
/// keyboard flow): the provider shows the code instead of redirecting.
pub const OOB_REDIRECT_URI: &str = "urn:ietf:wg:oauth:2.0:oob";

/// Authorization-request parameters the plugin sets itself (its checks
/// depend on them) or that have a setting of their own.
const RESERVED_AUTH_PARAMS: &[(&str, &str)] = &[
    ("response_type", "the flow"),
    ("client_id", "client-id"),
    ("redirect_uri", "redirect-uri"),
    ("scope", "scopes"),
    ("state", "nothing: the plugin checks it"),
    ("nonce", "nothing: the plugin checks it"),
    ("code_challenge", "pkce-method"),
    ("code_challenge_method", "pkce-method"),
    ("login_hint", "login-hint"),
    ("resource", "resource"),
];

/// `auth-params`: `key=value` pairs separated by commas, e.g.
/// `prompt=consent,acr_values=urn:mace:incommon:iap:silver`.
///
/// # Errors
///
/// [`Error::Misconfigured`] for a pair without `=` or a key the plugin sets
/// itself, naming the setting to use instead.
pub fn parse_auth_params(text: &str) -> Result<Vec<(String, String)>, Error> {
    let mut params = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Error::misconfigured(format!("setting `auth-params`: `{pair}` is not key=value")));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(Error::misconfigured(format!("setting `auth-params`: `{pair}` has no key")));
        }
        if let Some((_, instead)) = RESERVED_AUTH_PARAMS.iter().find(|(reserved, _)| *reserved == key) {
            return Err(Error::misconfigured(format!(
                "setting `auth-params`: `{key}` is set by the plugin (use {instead})"
            )));
        }
        params.push((key.to_string(), value.trim().to_string()));
    }
    Ok(params)
}

/// A token type of RFC 8693 by its short name (`jwt`, `id_token`...) or URN.
///
/// # Errors
///
/// [`Error::Misconfigured`] naming `setting` for anything else.
pub fn token_type(setting: &str, value: &str) -> Result<String, Error> {
    const SHORT: &[&str] = &["access_token", "id_token", "refresh_token", "jwt", "saml1", "saml2"];
    if value.starts_with("urn:") {
        return Ok(value.to_string());
    }
    if SHORT.contains(&value) {
        return Ok(format!("urn:ietf:params:oauth:token-type:{value}"));
    }
    Err(Error::misconfigured(format!(
        "setting `{setting}` must be one of {} or a token type URN, not `{value}`",
        SHORT.join(", ")
    )))
}

/// The code a user pasted for `auth-code-keyboard`: the code alone, or the
/// address (or query) the provider's page ended on, whose `state` must be
/// this login's.
///
/// # Errors
///
/// [`Error::Denied`] for another login's state or a refused login;
/// [`Error::Failed`] for an answer that holds no code.
pub fn pasted_code(answer: &str, expected_state: &str) -> Result<String, Error> {
    let answer = answer.trim();
    if answer.contains("code=") || answer.contains("error=") {
        let query = answer.split_once('?').map_or(answer, |(_, q)| q);
        let query = query.split('#').next().unwrap_or_default();
        let value = |name: &str| credbroker_sdk::loopback::query_value(query, name);
        if let Some(error) = value("error") {
            let description = value("error_description").unwrap_or_default();
            return Err(Error::denied(format!("the login was refused: {error} {description}")));
        }
        if value("state").is_some_and(|state| state != expected_state) {
            return Err(Error::denied(
                "the pasted address carries the state of another login, not this one (possible CSRF)",
            ));
        }
        return value("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Error::failed("the pasted address holds no code"));
    }
    if answer.is_empty() || answer.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::failed("that is not an authorization code: paste the code the page shows, or its address"));
    }
    Ok(answer.to_string())
}

fn flow_setting(key: &str, default: Flow) -> Result<Flow, Error> {
    let Some(name) = config::get(key) else { return Ok(default) };
    Flow::parse(&name).ok_or_else(|| {
        Error::misconfigured(format!(
            "setting `{key}` must be one of {}, not `{name}`",
            Flow::NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ))
    })
}

fn non_empty(key: &str) -> Option<String> {
    config::get(key).filter(|v| !v.is_empty())
}

fn token_kind(key: &str, default: TokenKind) -> Result<TokenKind, Error> {
    match config::get(key).as_deref() {
        None => Ok(default),
        Some("id-token") => Ok(TokenKind::Id),
        Some("access-token") => Ok(TokenKind::Access),
        Some(other) => {
            Err(Error::misconfigured(format!("setting `{key}` must be id-token or access-token, not `{other}`")))
        }
    }
}

fn exchange(flow: Flow) -> Result<Option<Exchange>, Error> {
    let keys = ["subject-token", "subject-file", "subject-flow"];
    let given: Vec<&str> = keys.iter().copied().filter(|k| non_empty(k).is_some()).collect();
    if flow != Flow::TokenExchange {
        return match given.first() {
            Some(key) => Err(Error::misconfigured(format!("setting `{key}` is for flow = token-exchange only"))),
            None => Ok(None),
        };
    }
    let type_setting = non_empty("subject-type");
    let subject = match given.as_slice() {
        ["subject-token"] => Subject::Value(config::require("subject-token")?),
        ["subject-file"] => Subject::File(config::require("subject-file")?),
        ["subject-flow"] => {
            let login = flow_setting("subject-flow", Flow::Device)?;
            if !login.is_login() {
                return Err(Error::misconfigured(format!(
                    "setting `subject-flow` must be a login (auth-code, auth-code-keyboard, device or password), not `{}`",
                    login.name()
                )));
            }
            let kind = match type_setting.as_deref().map(|t| token_type("subject-type", t)).transpose()? {
                None => TokenKind::Id,
                Some(t) if t.ends_with(":id_token") => TokenKind::Id,
                Some(t) if t.ends_with(":access_token") => TokenKind::Access,
                Some(other) => {
                    return Err(Error::misconfigured(format!(
                        "setting `subject-type`: a login's id_token or access_token is exchanged, not {other}"
                    )));
                }
            };
            Subject::Login(login, kind)
        }
        [] => {
            return Err(Error::misconfigured(
                "flow = token-exchange needs a subject: set subject-token (e.g. file:/path or env:NAME), \
                 subject-file (a file granted under grants.files, read on every run) or subject-flow \
                 (this profile logs in and exchanges its token)",
            ));
        }
        _ => return Err(Error::misconfigured(format!("set only one of {}", given.join(", ")))),
    };
    let default_type = match &subject {
        Subject::Login(_, TokenKind::Id) => "id_token",
        _ => "access_token",
    };
    let subject_token_type = token_type("subject-type", type_setting.as_deref().unwrap_or(default_type))?;
    let requested_token_type = non_empty("requested-type").map(|t| token_type("requested-type", &t)).transpose()?;
    Ok(Some(Exchange { subject, subject_token_type, audience: non_empty("audience"), requested_token_type }))
}

/// Read and check the settings.
///
/// # Errors
///
/// [`Error::Misconfigured`] naming the first setting that is missing or wrong.
pub fn read() -> Result<Settings, Error> {
    let flow = flow_setting("flow", Flow::AuthCode)?;
    let exchange = exchange(flow)?;
    let default_scopes = match flow {
        Flow::ClientCredentials => "",
        _ => "openid profile email groups offline_access",
    };
    let token = token_kind("token", TokenKind::Id)?;
    if flow == Flow::TokenExchange && config::get("token").is_some() {
        return Err(Error::misconfigured(
            "setting `token` does not apply to flow = token-exchange: the credential is the issued token \
             (subject-type picks the token of the subject login)",
        ));
    }
    let pkce = match config::get("pkce-method").as_deref() {
        None | Some("S256") => Pkce::S256,
        Some("plain") => Pkce::Plain,
        Some(other) => {
            return Err(Error::misconfigured(format!("setting `pkce-method` must be S256 or plain, not `{other}`")));
        }
    };
    let username = non_empty("username");
    let password = non_empty("password");
    if flow != Flow::Password && (username.is_some() || password.is_some()) {
        return Err(Error::misconfigured("settings `username` and `password` are for flow = password only"));
    }
    Ok(Settings {
        issuer: config::require("issuer")?.trim_end_matches('/').to_string(),
        client_id: config::require("client-id")?,
        client_secret: non_empty("client-secret"),
        token: if flow == Flow::ClientCredentials { TokenKind::Access } else { token },
        scopes: config::get("scopes").unwrap_or_else(|| default_scopes.into()),
        resource: non_empty("resource"),
        login_hint: non_empty("login-hint"),
        timeout_ms: config::parse_or::<u32>("timeout-seconds", 300)?.saturating_mul(1000),
        keyboard_redirect_uri: non_empty("redirect-uri").unwrap_or_else(|| OOB_REDIRECT_URI.into()),
        auth_params: parse_auth_params(&config::get("auth-params").unwrap_or_default())?,
        pkce,
        username,
        password,
        exchange,
        flow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_have_names() {
        for (name, flow) in Flow::NAMES {
            assert_eq!(Flow::parse(name), Some(*flow));
            assert_eq!(flow.name(), *name);
        }
        assert_eq!(Flow::parse("implicit"), None);
        assert!(Flow::Password.is_login() && !Flow::TokenExchange.is_login());
    }

    #[test]
    fn pkce_challenges_follow_rfc_7636() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(Pkce::S256.challenge(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert_eq!(Pkce::Plain.challenge(verifier), verifier);
        assert_eq!((Pkce::S256.method(), Pkce::Plain.method()), ("S256", "plain"));
    }

    #[test]
    fn extra_authorization_parameters_are_parsed_and_the_plugins_own_refused() {
        assert_eq!(
            parse_auth_params("prompt=consent, acr_values=urn:x:silver ,,max_age=0").unwrap(),
            [
                ("prompt".into(), "consent".into()),
                ("acr_values".into(), "urn:x:silver".into()),
                ("max_age".into(), "0".into())
            ]
        );
        assert!(parse_auth_params("").unwrap().is_empty());
        let state = parse_auth_params("prompt=login,state=mine").unwrap_err();
        assert_eq!(
            state.message(),
            "setting `auth-params`: `state` is set by the plugin (use nothing: the plugin checks it)"
        );
        let challenge = parse_auth_params("code_challenge_method=plain").unwrap_err();
        assert!(challenge.message().contains("(use pkce-method)"), "{challenge:?}");
        assert!(parse_auth_params("prompt").unwrap_err().message().contains("is not key=value"));
        assert!(parse_auth_params("=x").unwrap_err().message().contains("has no key"));
    }

    #[test]
    fn token_types_take_short_names_or_urns() {
        assert_eq!(token_type("t", "jwt").unwrap(), "urn:ietf:params:oauth:token-type:jwt");
        assert_eq!(token_type("t", "urn:example:custom").unwrap(), "urn:example:custom");
        assert!(token_type("subject-type", "bearer").unwrap_err().message().starts_with("setting `subject-type`"));
    }

    #[test]
    fn a_pasted_code_or_address_is_checked_against_the_login() {
        assert_eq!(pasted_code("  abc-123_x.y \n", "s1").unwrap(), "abc-123_x.y");
        assert_eq!(pasted_code("https://idp/oob?code=c%2F1&state=s1&iss=x", "s1").unwrap(), "c/1");
        assert_eq!(pasted_code("code=c2&state=s1", "s1").unwrap(), "c2");
        assert_eq!(pasted_code("http://localhost:8000/?code=c3", "s1").unwrap(), "c3", "no state to compare");
        assert!(
            matches!(pasted_code("https://idp/oob?code=c&state=other", "s1"), Err(Error::Denied(m)) if m.contains("another login"))
        );
        assert!(matches!(pasted_code("https://idp/oob?error=access_denied&state=s1", "s1"), Err(Error::Denied(_))));
        assert!(matches!(pasted_code("", "s1"), Err(Error::Failed(_))));
        assert!(matches!(pasted_code("two words", "s1"), Err(Error::Failed(_))));
        assert!(matches!(pasted_code("https://idp/oob?code=&state=s1", "s1"), Err(Error::Failed(_))));
    }
}
