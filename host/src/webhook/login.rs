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

use std::collections::HashMap;
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
    /// Failed logins from one client network (IPv4 /24, IPv6 /64) within the
    /// window before it is locked out.
    #[serde(default = "default_network_failures")]
    pub max_failures_per_network: u32,
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
fn default_network_failures() -> u32 {
    100
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

/// Counts failed logins per username, per client address and per client
/// network in a sliding window, and refuses attempts once any of them is over
/// its limit.
///
/// Checking and counting are one step: [`FailureLimiter::begin`] reserves the
/// attempt against every limit before the backend runs, and only a success
/// gives the reservation back. So logins in flight count as failures until
/// they succeed: 100 concurrent wrong passwords for a user with a limit of 5
/// reach the backend at most 5 times, and a user never has more logins in
/// flight than failures left.
///
/// The table is bounded: when it is full, entries with nothing left in the
/// window go first, then the unlocked entries with the fewest failures (the
/// longest quiet first); locked entries go only when nothing else is left.
/// A flood of failures from fresh addresses therefore cannot unlock anyone.
pub struct FailureLimiter {
    per_user: u32,
    per_client: u32,
    per_network: u32,
    /// One slot of the window: failures are forgotten a slot at a time.
    slot: Duration,
    started: Instant,
    capacity: usize,
    table: Mutex<HashMap<FailureKey, FailureCount>>,
}

/// Entries the failure table holds at most (about 15 MB with the map's overhead).
const MAX_TRACKED: usize = 100_000;
/// The window is counted in this many slots: a failure is forgotten between
/// one window and one window plus a sixteenth after it happened.
const WINDOW_SLOTS: u64 = 16;
/// Logins in flight per key when its limit is off (0).
const MAX_PENDING_UNLIMITED: u32 = 16;
/// The prefix a client's network is counted under, IPv4 and IPv6.
const NETWORK_PREFIX_V4: u32 = 24;
/// See [`NETWORK_PREFIX_V4`]: one IPv6 host can use any address of its /64.
const NETWORK_PREFIX_V6: u32 = 64;

/// What failures are counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum FailureKey {
    /// A username (case-insensitive) at one login backend, hashed so that
    /// long names cannot make the table large.
    User([u8; 16]),
    /// One client address.
    Client(IpAddr),
    /// The /24 (IPv4) or /64 (IPv6) network of a client address.
    Network(IpAddr),
}

/// One key's failures in the window, and its attempts in flight.
#[derive(Debug, Clone)]
struct FailureCount {
    /// Failures per slot, indexed by slot number modulo `WINDOW_SLOTS + 1`.
    failures: [u32; WINDOW_SLOTS as usize + 1],
    /// The newest slot counted (slots older than `WINDOW_SLOTS` before it are zero).
    newest: u64,
    /// Attempts begun and not yet settled.
    pending: u32,
}

impl FailureCount {
    fn new(now: u64) -> Self {
        Self { failures: [0; WINDOW_SLOTS as usize + 1], newest: now, pending: 0 }
    }

    fn index(slot: u64) -> usize {
        (slot % (WINDOW_SLOTS + 1)) as usize
    }

    /// Forget the slots that left the window by `now`.
    fn advance(&mut self, now: u64) {
        if now <= self.newest {
            return;
        }
        if now - self.newest > WINDOW_SLOTS {
            self.failures = [0; WINDOW_SLOTS as usize + 1];
        } else {
            for slot in self.newest + 1..=now {
                self.failures[Self::index(slot)] = 0;
            }
        }
        self.newest = now;
    }

    fn total(&self) -> u32 {
        self.failures.iter().fold(0u32, |sum, n| sum.saturating_add(*n))
    }

    fn is_empty(&self) -> bool {
        self.pending == 0 && self.total() == 0
    }

    /// Whether one more attempt would go over `limit` (0: no limit, but
    /// still a bound on attempts in flight).
    fn refuses(&self, limit: u32) -> bool {
        if limit == 0 {
            self.pending >= MAX_PENDING_UNLIMITED
        } else {
            self.total().saturating_add(self.pending) >= limit
        }
    }

    /// The slot from which one more attempt fits under `limit`, if failures
    /// (not attempts in flight) are what stands in the way.
    fn unlocks_at(&self, limit: u32) -> Option<u64> {
        let total = self.total();
        if limit == 0 || total < limit {
            return None;
        }
        // Enough of the oldest failures must leave the window.
        let mut to_forget = total - limit + 1;
        let oldest = self.newest.saturating_sub(WINDOW_SLOTS);
        for slot in oldest..=self.newest {
            let here = self.failures[Self::index(slot)];
            if here >= to_forget {
                return Some(slot + WINDOW_SLOTS + 1);
            }
            to_forget -= here;
        }
        Some(self.newest + WINDOW_SLOTS + 1)
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// The password was right: the user's failures are forgotten.
    Succeeded,
    /// Wrong, or not known to be right: counted.
    Failed,
    /// The backend never saw it: as if it had not been made.
    Withdrawn,
}

/// A login attempt reserved against the limits. Settle it with
/// [`LoginAttempt::succeeded`], [`LoginAttempt::failed`] or
/// [`LoginAttempt::withdraw`]; dropped unsettled (the request was cancelled
/// while the backend ran) it counts as failed.
#[must_use = "an attempt left unsettled counts as a failure"]
pub struct LoginAttempt<'a> {
    limiter: &'a FailureLimiter,
    keys: [FailureKey; 3],
    settled: bool,
}

impl LoginAttempt<'_> {
    /// The password was right.
    pub fn succeeded(mut self) {
        self.settle(Settled::Succeeded);
    }

    /// The password was wrong, or the backend could not say it was right.
    pub fn failed(mut self) {
        self.settle(Settled::Failed);
    }

    /// The backend never ran (no plugin slot was free).
    pub fn withdraw(mut self) {
        self.settle(Settled::Withdrawn);
    }

    fn settle(&mut self, how: Settled) {
        if !std::mem::replace(&mut self.settled, true) {
            self.limiter.settle(&self.keys, how, Instant::now());
        }
    }
}

impl Drop for LoginAttempt<'_> {
    fn drop(&mut self) {
        self.settle(Settled::Failed);
    }
}

impl FailureLimiter {
    /// A limiter per `config` (its ranges checked by [`ServerConfig::load`](super::config::ServerConfig::load)).
    pub fn new(config: &LoginConfig) -> Self {
        Self::with_capacity(config, MAX_TRACKED)
    }

    /// A limiter tracking at most `capacity` keys.
    fn with_capacity(config: &LoginConfig, capacity: usize) -> Self {
        let window = Duration::from_secs(config.failure_window_seconds.max(1));
        Self {
            per_user: config.max_failures_per_user,
            per_client: config.max_failures_per_client,
            per_network: config.max_failures_per_network,
            slot: (window / WINDOW_SLOTS as u32).max(Duration::from_millis(1)),
            started: Instant::now(),
            capacity: capacity.max(8),
            table: Mutex::default(),
        }
    }

    fn keys(validator: &str, username: &str, client: IpAddr) -> [FailureKey; 3] {
        let name =
            ring::digest::digest(&ring::digest::SHA256, format!("{validator}\0{}", username.to_lowercase()).as_bytes());
        let mut user = [0u8; 16];
        user.copy_from_slice(&name.as_ref()[..16]);
        let client = client.to_canonical();
        let network = match client {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & (u32::MAX << (32 - NETWORK_PREFIX_V4))).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << (128 - NETWORK_PREFIX_V6))).into()),
        };
        [FailureKey::User(user), FailureKey::Client(client), FailureKey::Network(network)]
    }

    fn limit(&self, key: &FailureKey) -> u32 {
        match key {
            FailureKey::User(_) => self.per_user,
            FailureKey::Client(_) => self.per_client,
            FailureKey::Network(_) => self.per_network,
        }
    }

    fn slot_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.started).as_nanos();
        u64::try_from(since / self.slot.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    /// How long from `at` until `slot` starts.
    fn until(&self, slot: u64, at: Instant) -> Duration {
        let nanos = u64::try_from(u128::from(slot).saturating_mul(self.slot.as_nanos())).unwrap_or(u64::MAX);
        match self.started.checked_add(Duration::from_nanos(nanos)) {
            Some(start) => start.saturating_duration_since(at),
            None => self.slot.saturating_mul(WINDOW_SLOTS as u32 + 1),
        }
    }

    /// Reserve a login attempt of `username` at `validator` from `client`,
    /// or say how long to wait before trying again.
    ///
    /// # Errors
    ///
    /// The time to wait when the user, the client or its network is locked
    /// out, or has as many attempts in flight as it has failures left.
    pub fn begin(&self, validator: &str, username: &str, client: IpAddr) -> Result<LoginAttempt<'_>, Duration> {
        self.begin_at(validator, username, client, Instant::now())
    }

    fn begin_at(
        &self,
        validator: &str,
        username: &str,
        client: IpAddr,
        at: Instant,
    ) -> Result<LoginAttempt<'_>, Duration> {
        let keys = Self::keys(validator, username, client);
        let now = self.slot_of(at);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait: Option<Duration> = None;
        for key in &keys {
            let Some(count) = table.get_mut(key) else { continue };
            count.advance(now);
            let limit = self.limit(key);
            if count.refuses(limit) {
                // Locked by failures: until enough of them leave the window.
                // Only by attempts in flight: they settle within seconds.
                let left = count.unlocks_at(limit).map_or(Duration::from_secs(1), |slot| self.until(slot, at));
                wait = Some(wait.map_or(left, |w| w.max(left)));
            }
        }
        if let Some(wait) = wait {
            return Err(wait);
        }
        let missing = keys.iter().filter(|k| !table.contains_key(k)).count();
        if table.len() + missing > self.capacity && !self.make_room(&mut table, now, missing) {
            // Every entry has an attempt in flight: nothing can be forgotten.
            return Err(Duration::from_secs(1));
        }
        for key in keys {
            table.entry(key).or_insert_with(|| FailureCount::new(now)).pending += 1;
        }
        Ok(LoginAttempt { limiter: self, keys, settled: false })
    }

    fn settle(&self, keys: &[FailureKey; 3], how: Settled, at: Instant) {
        let now = self.slot_of(at);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            let Some(count) = table.get_mut(key) else { continue };
            count.advance(now);
            count.pending = count.pending.saturating_sub(1);
            match (how, key) {
                (Settled::Failed, _) => {
                    let here = &mut count.failures[FailureCount::index(now)];
                    *here = here.saturating_add(1);
                }
                // A success clears the user's record, not the client's.
                (Settled::Succeeded, FailureKey::User(_)) => count.failures = [0; WINDOW_SLOTS as usize + 1],
                _ => {}
            }
            if count.is_empty() {
                table.remove(key);
            }
        }
    }

    /// Make room for `needed` new keys, and an eighth of the table besides so
    /// that a flood pays for this scan once per many new keys; false when
    /// every entry has an attempt in flight.
    fn make_room(&self, table: &mut HashMap<FailureKey, FailureCount>, now: u64, needed: usize) -> bool {
        table.retain(|_, count| {
            count.advance(now);
            !count.is_empty()
        });
        let target = self.capacity.saturating_sub(needed.max(self.capacity / 8));
        if table.len() <= target {
            return true;
        }
        // Unlocked before locked; then the fewest failures; then the longest quiet.
        let mut candidates: Vec<(bool, u32, u64, FailureKey)> = table
            .iter()
            .filter(|(_, count)| count.pending == 0)
            .map(|(key, count)| (count.refuses(self.limit(key)), count.total(), count.newest, *key))
            .collect();
        let evict = (table.len() - target).min(candidates.len());
        if evict > 0 && evict < candidates.len() {
            candidates.select_nth_unstable(evict - 1);
        }
        let locked = candidates[..evict].iter().filter(|c| c.0).count();
        for (_, _, _, key) in &candidates[..evict] {
            table.remove(key);
        }
        if locked > 0 {
            tracing::warn!(
                "the login failure table is full of locked-out users and clients ({} entries): forgot {locked} of them",
                self.capacity
            );
        } else {
            tracing::debug!("the login failure table is full: forgot the {evict} least failed entries");
        }
        table.len() + needed <= self.capacity
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

    fn limits(user: u32, client: u32, network: u32) -> LoginConfig {
        let mut config = config(PathBuf::from("/unused"));
        config.max_failures_per_user = user;
        config.max_failures_per_client = client;
        config.max_failures_per_network = network;
        config
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// One failed login of `username` from `client`, if it is let in.
    fn fail(limiter: &FailureLimiter, username: &str, client: &str) -> Result<(), Duration> {
        limiter.begin("v", username, ip(client)).map(LoginAttempt::failed)
    }

    #[test]
    fn failures_lock_out_users_clients_and_networks() {
        let limiter = FailureLimiter::new(&limits(3, 5, 8));
        for _ in 0..3 {
            fail(&limiter, "Alice", "10.1.2.3").unwrap();
        }
        let wait = limiter.begin("v", "alice", ip("10.1.2.3")).err().expect("usernames are case-insensitive");
        assert!(wait > Duration::from_secs(290) && wait <= Duration::from_secs(320), "{wait:?}");
        // Per login backend.
        limiter.begin("w", "alice", ip("10.1.2.3")).unwrap().withdraw();
        fail(&limiter, "bob", "10.1.2.3").unwrap();
        fail(&limiter, "carol", "10.1.2.3").unwrap();
        assert!(limiter.begin("v", "dave", ip("10.1.2.3")).is_err(), "the client is locked out after 5");
        // Its /24 has room for 3 more, then the whole network waits.
        for (user, client) in [("erin", "10.1.2.4"), ("frank", "10.1.2.5"), ("grace", "10.1.2.200")] {
            fail(&limiter, user, client).unwrap();
        }
        assert!(limiter.begin("v", "heidi", ip("10.1.2.99")).is_err(), "the /24 is locked out after 8");
        assert!(limiter.begin("v", "heidi", ip("10.1.3.1")).is_ok(), "the next /24 is not");
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64_and_mapped_ipv4_is_ipv4() {
        let limiter = FailureLimiter::new(&limits(0, 1000, 4));
        for i in 0..4 {
            fail(&limiter, &format!("u{i}"), &format!("2001:db8:1:2::{i:x}")).unwrap();
        }
        assert!(limiter.begin("v", "x", ip("2001:db8:1:2:ffff::1")).is_err(), "every address of the /64");
        assert!(limiter.begin("v", "x", ip("2001:db8:1:3::1")).is_ok());
        for i in 0..4 {
            fail(&limiter, &format!("m{i}"), &format!("::ffff:192.0.2.{i}")).unwrap();
        }
        assert!(limiter.begin("v", "x", ip("192.0.2.77")).is_err(), "::ffff:a.b.c.d is a.b.c.d");
    }

    #[test]
    fn attempts_in_flight_count_until_they_succeed() {
        let limiter = FailureLimiter::new(&limits(5, 100, 1000));
        let client = ip("10.0.0.1");
        // Five concurrent attempts take the whole budget; the sixth waits.
        let attempts: Vec<_> = (0..5).map(|_| limiter.begin("v", "alice", client).unwrap()).collect();
        assert_eq!(limiter.begin("v", "alice", client).err(), Some(Duration::from_secs(1)));
        let mut attempts = attempts.into_iter();
        attempts.next().unwrap().succeeded();
        attempts.next().unwrap().withdraw();
        // Two settled without a failure: two more may start.
        let more = [limiter.begin("v", "alice", client).unwrap(), limiter.begin("v", "alice", client).unwrap()];
        assert!(limiter.begin("v", "alice", client).is_err());
        // The rest fail; one is dropped unsettled (its request was cancelled): also a failure.
        for attempt in attempts {
            attempt.failed();
        }
        let [dropped, failed] = more;
        drop(dropped);
        failed.failed();
        let wait = limiter.begin("v", "alice", client).err().expect("five failures lock alice out");
        assert!(wait > Duration::from_secs(1), "locked by failures, not by attempts in flight: {wait:?}");
    }

    #[test]
    fn failures_leave_the_window() {
        let mut config = limits(2, 100, 1000);
        config.failure_window_seconds = 160;
        let limiter = FailureLimiter::new(&config);
        let t0 = limiter.started;
        let client = ip("10.0.0.1");
        for at in [t0, t0 + Duration::from_secs(50)] {
            let mut attempt = limiter.begin_at("v", "alice", client, at).unwrap();
            limiter.settle(&attempt.keys, Settled::Failed, at);
            attempt.settled = true;
        }
        let at = t0 + Duration::from_secs(100);
        let wait = limiter.begin_at("v", "alice", client, at).err().unwrap();
        // The first failure leaves a window (160 s, in 10 s slots) after its slot began.
        assert_eq!(wait, Duration::from_secs(70), "{wait:?}");
        assert!(limiter.begin_at("v", "alice", client, t0 + Duration::from_secs(169)).is_err());
        assert!(limiter.begin_at("v", "alice", client, t0 + Duration::from_secs(170)).is_ok());
    }

    #[test]
    fn a_full_table_keeps_its_lockouts() {
        let limiter = FailureLimiter::with_capacity(&limits(5, 20, 100), 1_000);
        for _ in 0..5 {
            fail(&limiter, "alice", "10.0.0.1").unwrap();
        }
        let mut lockouts = vec![("alice".to_string(), "10.9.9.9".to_string())];
        // Thousands of source addresses (three keys each), most failing once,
        // every hundredth locking its own user out.
        for i in 0u32..6_000 {
            // Each in a network of its own.
            let client =
                if i % 2 == 0 { format!("172.{}.{}.1", i >> 8, i & 0xff) } else { format!("2001:db8:{i:x}::1") };
            if i % 100 == 0 {
                let user = format!("victim{i}");
                for _ in 0..5 {
                    fail(&limiter, &user, &client).unwrap();
                }
                lockouts.push((user, "10.9.9.9".into()));
            } else {
                fail(&limiter, &format!("guess{i}"), &client).unwrap();
            }
            assert!(limiter.table.lock().unwrap().len() <= 1_000);
        }
        for (user, client) in &lockouts {
            assert!(limiter.begin("v", user, ip(client)).is_err(), "{user} was unlocked by the flood");
        }
        assert!(limiter.begin("v", "bob", ip("10.0.0.2")).is_ok(), "and others still get in");
    }
}
