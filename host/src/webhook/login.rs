//! Password logins and the short-lived tokens `credbroker serve` issues for
//! them.
//!
//! `POST /v1/login/NAME` hands a username and password to the login backend
//! plugin `NAME` (e.g. LDAP). On success the host signs a token (a JWT, EdDSA
//! with the server's Ed25519 key) naming the user, the groups and the
//! validator. When kube-apiserver later asks about that token, the host checks
//! signature, expiry and audience itself, with no network call, and asks the
//! backend whether the user still exists at most every `recheck-seconds`. The
//! password is never stored, logged or put in a token.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::review::UserInfo;
pub use crate::keys::KeyError;
use crate::keys::{key_id, public_key_of};

/// `[login]` of the server configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LoginConfig {
    /// The Ed25519 private key (PKCS#8 PEM) tokens are signed with.
    pub signing_key_file: PathBuf,
    /// More keys whose tokens are still accepted (public or private PEM): the
    /// previous signing keys, during a rotation.
    #[serde(default)]
    pub verification_key_files: Vec<PathBuf>,
    /// The `iss` of issued tokens.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// The `aud` of issued tokens; reviews asking for other audiences are denied.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// How long an issued token is valid, in seconds.
    #[serde(default = "default_lifetime")]
    pub token_lifetime_seconds: u64,
    /// Ask the backend whether a token's user still exists (and refresh the
    /// groups) when the last answer is older than this; 0 never asks.
    #[serde(default = "default_recheck")]
    pub recheck_seconds: u64,
    /// Failed logins for one username within the window before it is locked out.
    #[serde(default = "default_user_failures")]
    pub max_failures_per_user: u32,
    /// Failed logins from one client address within the window before it is locked out.
    #[serde(default = "default_client_failures")]
    pub max_failures_per_client: u32,
    /// The window for counting failures, in seconds.
    #[serde(default = "default_window")]
    pub failure_window_seconds: u64,
}

fn default_issuer() -> String {
    "credbroker".into()
}
fn default_lifetime() -> u64 {
    900
}
fn default_recheck() -> u64 {
    60
}
fn default_user_failures() -> u32 {
    5
}
fn default_client_failures() -> u32 {
    20
}
fn default_window() -> u64 {
    300
}

/// The claims of an issued token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// The user name.
    pub sub: String,
    /// Audiences (omitted when none are configured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aud: Vec<String>,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id.
    pub jti: String,
    /// The user's uid.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Groups at login.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The login backend (validator name) that vouched for the user.
    pub val: String,
}

/// What a bearer token is, as far as the issuer can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Not one of ours (another JWT, or not a JWT): ask the validators.
    NotOurs,
    /// Ours, but not valid: why.
    Invalid(String),
    /// Ours and valid.
    Valid(Claims),
}

/// Signs and verifies the server's own tokens.
pub struct TokenIssuer {
    config: LoginConfig,
    signing: EncodingKey,
    signing_kid: String,
    verifying: HashMap<String, DecodingKey>,
}

impl TokenIssuer {
    /// Load the keys.
    ///
    /// # Errors
    ///
    /// [`KeyError`] for an unreadable or non-Ed25519 key.
    pub fn new(config: &LoginConfig) -> Result<Self, KeyError> {
        let pem = crate::fsutil::read_bounded(&config.signing_key_file, crate::fsutil::bounds::SMALL).map_err(|e| {
            KeyError { path: config.signing_key_file.clone(), message: format!("cannot read: {}", e.reason()) }
        })?;
        let signing = EncodingKey::from_ed_pem(&pem).map_err(|e| KeyError {
            path: config.signing_key_file.clone(),
            message: format!("is not an Ed25519 private key in PKCS#8 PEM: {e}"),
        })?;
        let public = public_key_of(&config.signing_key_file)?;
        let signing_kid = key_id(&public);
        let mut verifying = HashMap::from([(signing_kid.clone(), DecodingKey::from_ed_der(&public))]);
        for path in &config.verification_key_files {
            let public = public_key_of(path)?;
            verifying.insert(key_id(&public), DecodingKey::from_ed_der(&public));
        }
        Ok(Self { config: config.clone(), signing, signing_kid, verifying })
    }

    /// The configuration.
    pub fn config(&self) -> &LoginConfig {
        &self.config
    }

    /// Issue a token for `user`, vouched for by `validator`; returns it and its expiry.
    ///
    /// # Errors
    ///
    /// When signing fails (it does not with a loaded key).
    pub fn mint(&self, user: &UserInfo, validator: &str) -> Result<(String, i64), String> {
        let now = now_unix();
        let exp = now.saturating_add(i64::try_from(self.config.token_lifetime_seconds).unwrap_or(i64::MAX));
        let mut jti = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut jti).map_err(|_| "no randomness")?;
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: user.username.clone(),
            aud: self.config.audiences.clone(),
            exp,
            iat: now,
            nbf: now,
            jti: hex::encode(jti),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            val: validator.to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.signing).map_err(|e| e.to_string())?;
        Ok((token, exp))
    }

    /// Check `token`.
    pub fn verify(&self, token: &str) -> Verified {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Verified::NotOurs;
        };
        let Some(key) = header.kid.as_ref().and_then(|kid| self.verifying.get(kid)) else {
            return Verified::NotOurs;
        };
        if header.alg != Algorithm::EdDSA {
            return Verified::Invalid(format!("algorithm {:?} is not accepted", header.alg));
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        if self.config.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.config.audiences);
        }
        match jsonwebtoken::decode::<Claims>(token, key, &validation) {
            Ok(data) => Verified::Valid(data.claims),
            Err(e) => Verified::Invalid(format!("the credbroker token is not valid: {e}")),
        }
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Counts failed logins per username and per client address in a sliding
/// window, and locks out either once over its limit.
pub struct FailureLimiter {
    window: Duration,
    per_user: u32,
    per_client: u32,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Most keys tracked; beyond, the oldest records are forgotten.
const MAX_TRACKED: usize = 100_000;

impl FailureLimiter {
    /// A limiter per `config`.
    pub fn new(config: &LoginConfig) -> Self {
        Self {
            window: Duration::from_secs(config.failure_window_seconds),
            per_user: config.max_failures_per_user,
            per_client: config.max_failures_per_client,
            failures: Mutex::default(),
        }
    }

    fn keys(validator: &str, username: &str, client: IpAddr) -> [(String, u32); 2] {
        [(format!("user\0{validator}\0{}", username.to_lowercase()), 0), (format!("client\0{client}"), 1)]
    }

    /// How long until `username` from `client` may try again (`None`: now).
    pub fn locked_for(&self, validator: &str, username: &str, client: IpAddr) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut wait = None;
        for (key, which) in Self::keys(validator, username, client) {
            let limit = if which == 0 { self.per_user } else { self.per_client } as usize;
            if let Some(times) = failures.get_mut(&key) {
                while times.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                    times.pop_front();
                }
                if limit > 0 && times.len() >= limit {
                    let until = times[times.len() - limit] + self.window;
                    let left = until.saturating_duration_since(now);
                    wait = Some(wait.map_or(left, |w: Duration| w.max(left)));
                }
            }
        }
        wait
    }

    /// Record a failed login.
    pub fn failed(&self, validator: &str, username: &str, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED {
            let now = Instant::now();
            failures.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < self.window));
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        for (key, _) in Self::keys(validator, username, client) {
            let times = failures.entry(key).or_default();
            times.push_back(Instant::now());
            if times.len() > 1024 {
                times.pop_front();
            }
        }
    }

    /// A successful login clears the user's record (not the client's).
    pub fn succeeded(&self, validator: &str, username: &str, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let [(user, _), _] = Self::keys(validator, username, client);
        failures.remove(&user);
    }
}

/// A login backend's answer about a user (none: gone), and when it was given.
type Answer = (Option<UserInfo>, Instant);

/// Recent answers of login backends about users, so issued tokens are re-checked
/// at most every `recheck-seconds`.
#[derive(Default)]
pub struct RecheckCache {
    /// By (validator, username).
    entries: Mutex<HashMap<(String, String), Answer>>,
}

impl RecheckCache {
    /// The answer about `username` from `validator` if younger than `max_age`.
    pub fn get(&self, validator: &str, username: &str, max_age: Duration) -> Option<Option<UserInfo>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(validator.to_string(), username.to_string()))
            .filter(|(_, at)| at.elapsed() < max_age)
            .map(|(user, _)| user.clone())
    }

    /// Remember an answer.
    pub fn put(&self, validator: &str, username: &str, user: Option<UserInfo>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_TRACKED {
            entries.clear();
        }
        entries.insert((validator.to_string(), username.to_string()), (user, Instant::now()));
    }

    /// Forget everything (after a reload).
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A login request body.
#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn write_key(dir: &Path, name: &str) -> PathBuf {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pem = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec());
        let path = dir.join(name);
        let body = base64_pem(pem.secret_pkcs8_der());
        std::fs::write(&path, format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")).unwrap();
        path
    }

    fn base64_pem(der: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    fn config(signing: PathBuf) -> LoginConfig {
        toml::from_str::<LoginConfig>(&format!("signing-key-file = {:?}", signing.display().to_string())).unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_tampering_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = TokenIssuer::new(&config(write_key(dir.path(), "k.pem"))).unwrap();
        let user =
            UserInfo { username: "alice".into(), uid: "1".into(), groups: vec!["devs".into()], ..Default::default() };
        let (token, exp) = issuer.mint(&user, "corp").unwrap();
        assert!(exp > now_unix());
        let Verified::Valid(claims) = issuer.verify(&token) else { panic!("not valid") };
        assert_eq!(
            (claims.sub.as_str(), claims.val.as_str(), claims.groups.as_slice()),
            ("alice", "corp", &["devs".to_string()][..])
        );
        // Flip a character of the payload: the signature no longer matches.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let flipped = if &parts[1][5..6] == "A" { "B" } else { "A" };
        parts[1].replace_range(5..6, flipped);
        assert!(matches!(issuer.verify(&parts.join(".")), Verified::Invalid(_)));
        assert_eq!(issuer.verify("not-a-jwt"), Verified::NotOurs);
    }

    #[test]
    fn rotation_keeps_old_tokens_valid() {
        let dir = tempfile::tempdir().unwrap();
        let old = write_key(dir.path(), "old.pem");
        let old_issuer = TokenIssuer::new(&config(old.clone())).unwrap();
        let (token, _) = old_issuer.mint(&UserInfo { username: "bob".into(), ..Default::default() }, "corp").unwrap();
        let mut rotated = config(write_key(dir.path(), "new.pem"));
        assert_eq!(TokenIssuer::new(&rotated).unwrap().verify(&token), Verified::NotOurs);
        rotated.verification_key_files = vec![old];
        assert!(matches!(TokenIssuer::new(&rotated).unwrap().verify(&token), Verified::Valid(_)));
    }

    #[test]
    fn failures_lock_out_users_and_clients() {
        let mut config = config(PathBuf::from("/unused"));
        config.max_failures_per_user = 3;
        config.max_failures_per_client = 5;
        let limiter = FailureLimiter::new(&config);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.locked_for("v", "Alice", ip).is_none());
            limiter.failed("v", "Alice", ip);
        }
        assert!(limiter.locked_for("v", "alice", ip).is_some(), "usernames are case-insensitive");
        assert!(limiter.locked_for("v", "bob", ip).is_none());
        limiter.failed("v", "bob", ip);
        limiter.failed("v", "carol", ip);
        assert!(limiter.locked_for("v", "dave", ip).is_some(), "the client is locked out after 5");
        assert!(limiter.locked_for("v", "dave", "10.9.9.9".parse().unwrap()).is_none());
    }
}
