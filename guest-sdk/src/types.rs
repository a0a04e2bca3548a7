//! The contract's types, with constructors that keep plugin code short.

pub use crate::bindings::credbroker::plugin::types::{
    Authenticated, ClientCertificate, ClusterInfo, Credential, CredentialRequest, CredentialSecret, HostError,
    ReviewOutcome, Setting, TokenReview, UserInfo,
};
pub use crate::bindings::login::exports::credbroker::plugin::password_login::LoginOutcome;

/// Why a plugin failed: the host shows the message and answers by the case
/// (the contract's `plugin-error`). Build one with the constructors below, or
/// let `?` convert a [`HostError`].
pub use crate::bindings::credbroker::plugin::types::PluginError as Error;

impl Error {
    /// The plugin's settings are missing or wrong; say which and what to set.
    /// `credbroker get` fails with the message; `credbroker serve` denies the
    /// review with it as `status.error` (and fails the load, from
    /// [`Validator::setup`](crate::Validator::setup)).
    pub fn misconfigured(message: impl Into<String>) -> Self {
        Self::Misconfigured(message.into())
    }

    /// The identity backend refused (wrong password, revoked token). Retrying
    /// with the same input will not help: `get` fails, `serve` denies.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::Denied(message.into())
    }

    /// A backend could not be reached, timed out or failed transiently;
    /// retrying may help. `get` fails with the message; `serve` answers 503,
    /// which kube-apiserver retries, and caches nothing.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }

    /// A backend asked to slow down (it is rate limiting: HTTP 429). `get`
    /// fails with the message (kubectl runs it again on its next command);
    /// `serve` answers 429, which kube-apiserver retries with backoff, and
    /// caches nothing. Say when to retry if the backend did (`Retry-After`).
    pub fn throttled(message: impl Into<String>) -> Self {
        Self::Throttled(message.into())
    }

    /// Any other failure: `get` fails, `serve` denies the review with the message.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }
}

impl Error {
    /// The human-readable message, without the case.
    pub fn message(&self) -> &str {
        match self {
            Self::Misconfigured(m) | Self::Denied(m) | Self::Unavailable(m) | Self::Throttled(m) | Self::Failed(m) => m,
        }
    }
}

impl HostError {
    /// A human-readable description of the failure.
    pub fn describe(&self) -> String {
        match self {
            Self::Denied(m) => format!("denied by policy: {m}"),
            Self::Invalid(m) => format!("invalid request: {m}"),
            Self::Unreachable(m) => format!("unreachable: {m}"),
            Self::Timeout(m) => format!("timed out: {m}"),
            Self::NotInteractive => "cannot ask the user: not running interactively".to_string(),
        }
    }
}

/// A host capability's failure becomes the matching plugin error, so `?` works:
/// a policy denial or a non-interactive prompt is a configuration problem the
/// operator or user must fix, an unreachable backend is transient.
impl From<HostError> for Error {
    fn from(error: HostError) -> Self {
        match error {
            HostError::Denied(_) | HostError::NotInteractive => Self::Misconfigured(error.describe()),
            HostError::Unreachable(_) | HostError::Timeout(_) => Self::Unavailable(error.describe()),
            HostError::Invalid(_) => Self::Failed(error.describe()),
        }
    }
}

impl Credential {
    /// A bearer token without expiry.
    pub fn token(token: impl Into<String>) -> Self {
        Self { secret: CredentialSecret::Token(token.into()), expires_at: None }
    }

    /// A TLS client certificate and its private key, both PEM.
    pub fn client_certificate(certificate_pem: impl Into<String>, private_key_pem: impl Into<String>) -> Self {
        Self {
            secret: CredentialSecret::ClientCertificate(ClientCertificate {
                certificate_pem: certificate_pem.into(),
                private_key_pem: private_key_pem.into(),
            }),
            expires_at: None,
        }
    }

    /// Expires at `unix_seconds` (seconds since the Unix epoch).
    pub fn expires_at(mut self, unix_seconds: i64) -> Self {
        self.expires_at = Some(unix_seconds);
        self
    }

    /// Expires `seconds` from now.
    pub fn expires_in(self, seconds: i64) -> Self {
        self.expires_at(now_unix().saturating_add(seconds))
    }
}

impl CredentialRequest {
    /// The value of setting `key` in this request.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.iter().find(|s| s.key == key).map(|s| s.value.as_str())
    }
}

impl UserInfo {
    /// A user with a name and groups, no uid and no extra attributes.
    pub fn new(username: impl Into<String>, groups: Vec<String>) -> Self {
        Self { username: username.into(), uid: None, groups, extra: Vec::new() }
    }
}

impl ReviewOutcome {
    /// The token belongs to `user`; valid for any audience the operator configured.
    pub fn authenticated(user: UserInfo) -> Self {
        Self::Authenticated(Authenticated { user, audiences: Vec::new() })
    }

    /// The token is not valid, for `reason`.
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self::Rejected(reason.into())
    }
}

/// Seconds since the Unix epoch by the sandbox's wall clock (the host's clock).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
