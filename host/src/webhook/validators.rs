//! The ordered set of validators a review runs through.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::config::ServerConfig;
use super::identity::IdentityPolicy;
use super::login::{Claims, RecheckCache, TokenIssuer, Verified};
use super::metrics::Metrics;
use super::review::UserInfo;
use crate::bindings::LoginOutcome;
use crate::bindings::types::{ReviewOutcome, TokenReview};
use crate::capabilities::{NoTerminal, StateStore};
use crate::limits::LimitExceeded;
use crate::plugin::prepare::PluginSources;
use crate::plugin::reference::OciReference;
use crate::runtime::{LoadedPlugin, RunError, Runtime, Sandbox, World};

/// The plugin slots of a server: how many plugin runs (reviews, logins,
/// re-checks) may be in progress at once, and how long one waits for a slot.
#[derive(Clone)]
pub struct PluginSlots {
    pool: Arc<Semaphore>,
    size: u32,
    queue_timeout: Duration,
}

impl PluginSlots {
    /// `size` slots (`[server] max-concurrent-reviews`); a run waits at most
    /// `queue_timeout` for one.
    pub fn new(size: u32, queue_timeout: Duration) -> Self {
        Self { pool: Arc::new(Semaphore::new(size as usize)), size, queue_timeout }
    }

    /// How many there are.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The share of the slots a validator gets when its configuration names
    /// none: an equal part of them, at least [`MIN_DEFAULT_SHARE`] (or all
    /// of them, if there are fewer).
    pub fn default_share(&self, validators: usize) -> u32 {
        let equal = self.size / u32::try_from(validators.max(1)).unwrap_or(u32::MAX);
        equal.max(MIN_DEFAULT_SHARE.min(self.size))
    }
}

/// The smallest share of the plugin slots a validator gets by default.
pub const MIN_DEFAULT_SHARE: u32 = 4;

/// Permits to run one plugin: one of its validator's share, one of the pool.
pub struct SlotPermit {
    _share: tokio::sync::OwnedSemaphorePermit,
    _pool: tokio::sync::OwnedSemaphorePermit,
}

/// Something that decides on tokens: a wasm plugin, or (in benchmarks and
/// embedders) native code.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Prepare for reviews, once per load (a validator's `validator-setup`).
    async fn setup(&self) -> Result<(), RunError> {
        Ok(())
    }

    /// Review `token` for `audiences`.
    async fn review(&self, token: &str, audiences: &[String]) -> Result<ReviewOutcome, RunError>;
}

/// A validator plugin in its sandbox.
pub struct WasmBackend {
    runtime: Arc<Runtime>,
    plugin: LoadedPlugin,
    sandbox: Sandbox,
}

#[async_trait::async_trait]
impl Backend for WasmBackend {
    async fn setup(&self) -> Result<(), RunError> {
        self.plugin.setup(&self.runtime, &self.sandbox).await
    }

    async fn review(&self, token: &str, audiences: &[String]) -> Result<ReviewOutcome, RunError> {
        let review = TokenReview { token: token.to_string(), audiences: audiences.to_vec() };
        self.plugin.validate(self.runtime.engine(), &self.sandbox, review).await
    }
}

/// Something that checks passwords and looks users up: a login plugin, or
/// (in benchmarks and embedders) native code.
#[async_trait::async_trait]
pub trait LoginBackend: Send + Sync {
    /// Check `password` for `username`.
    async fn authenticate(&self, username: &str, password: &str) -> Result<LoginOutcome, RunError>;
    /// The user called `username` now, or none when gone.
    async fn lookup(&self, username: &str) -> Result<Option<crate::bindings::types::UserInfo>, RunError>;
}

#[async_trait::async_trait]
impl LoginBackend for WasmBackend {
    async fn authenticate(&self, username: &str, password: &str) -> Result<LoginOutcome, RunError> {
        self.plugin.authenticate(self.runtime.engine(), &self.sandbox, username, password).await
    }

    async fn lookup(&self, username: &str) -> Result<Option<crate::bindings::types::UserInfo>, RunError> {
        self.plugin.lookup(self.runtime.engine(), &self.sandbox, username).await
    }
}

/// One configured validator.
pub struct Validator {
    /// Its name in logs and metrics.
    pub name: String,
    /// The identities it may assert.
    pub identities: Arc<IdentityPolicy>,
    /// Only tokens with this prefix go here.
    pub token_prefix: Option<String>,
    /// Audiences the operator says its tokens are valid for.
    pub audiences: Vec<String>,
    /// What decides on tokens, when the plugin is a token validator.
    pub backend: Option<Arc<dyn Backend>>,
    /// The login backend, when the plugin implements the `login` world.
    pub login: Option<Arc<dyn LoginBackend>>,
}

/// The result of running a review through the validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A validator accepted the token.
    Authenticated {
        /// Which one.
        validator: String,
        /// The user.
        user: UserInfo,
        /// Audiences to report (empty: the API server's own, implicitly).
        audiences: Vec<String>,
    },
    /// No validator accepted it.
    Denied {
        /// Why, per validator.
        reason: String,
    },
    /// A validator that might have accepted it could not decide (backend down,
    /// timeout): the API server should retry.
    Transient {
        /// Why.
        reason: String,
    },
    /// Every plugin slot stayed busy: the API server should retry later.
    Busy,
    /// A validator's backend is rate limiting: the API server should retry later.
    Throttled {
        /// Why.
        reason: String,
    },
}

/// The validators of one configuration generation, shared by the reviews that
/// started under it.
pub struct ValidatorSet {
    validators: Vec<Validator>,
    /// Each validator's share of the slots, by index: a flood of tokens for
    /// one validator waits in its own queue, not in front of the others.
    shares: Vec<Arc<Semaphore>>,
    slots: PluginSlots,
    /// Signs and verifies the server's own tokens, when `[login]` is configured.
    pub issuer: Option<Arc<TokenIssuer>>,
    /// Files whose change means a reload (the configuration, plugin and key
    /// files, and the store's ref files of OCI plugins).
    pub watched: Vec<PathBuf>,
    /// The OCI tags its validators were loaded from, which `[plugins]
    /// update-interval-seconds` re-resolves.
    pub oci_tags: Vec<OciReference>,
    /// The `[plugins]` policy it was loaded under.
    pub plugin_policy: crate::signing::TrustPolicy,
}

/// A validator set that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("validator `{name}`: {message}")]
pub struct BuildError {
    /// The validator.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

impl ValidatorSet {
    /// A set of `validators` sharing `slots` concurrent plugin runs, each
    /// with the [default share](PluginSlots::default_share).
    pub fn new(validators: Vec<Validator>, slots: PluginSlots) -> Self {
        let share = slots.default_share(validators.len());
        let shares = validators.iter().map(|_| Arc::new(Semaphore::new(share as usize))).collect();
        Self {
            validators,
            shares,
            slots,
            issuer: None,
            watched: Vec::new(),
            oci_tags: Vec::new(),
            plugin_policy: Default::default(),
        }
    }

    /// Load every validator of `config` (compiling plugins as needed).
    ///
    /// # Errors
    ///
    /// The first validator that cannot be loaded.
    pub fn load(
        config: &ServerConfig,
        runtime: &Arc<Runtime>,
        sources: &PluginSources,
        slots: PluginSlots,
    ) -> Result<Self, BuildError> {
        let mut validators = Vec::new();
        let mut shares = Vec::new();
        let mut watched = Vec::new();
        let mut oci_tags = Vec::new();
        let default_share = slots.default_share(config.validators.len());
        for entry in &config.validators {
            let share = entry.max_concurrent_reviews.unwrap_or(default_share).min(slots.size());
            shares.push(Arc::new(Semaphore::new(share as usize)));
            let fail = |message: String| BuildError { name: entry.name.clone(), message };
            let spec = entry.spec();
            let prepared = sources
                .prepare(
                    &spec,
                    &config.plugins,
                    runtime,
                    &[World::Validator, World::Login],
                    Arc::new(NoTerminal),
                    StateStore::memory(),
                )
                .map_err(|e| fail(e.to_string()))?;
            tracing::info!(validator = %entry.name, "loaded {} (sha256 {})", crate::boundary::text::name(&prepared.plugin.name), prepared.plugin.sha256);
            watched.extend(prepared.plugin.watched_files(&sources.store, config.plugins.require_signatures));
            if let crate::plugin::PluginOrigin::Oci { reference, .. } = &prepared.plugin.origin
                && reference.digest.is_none()
            {
                oci_tags.push(reference.clone());
            }
            let (loaded, sandbox) = (prepared.loaded, prepared.sandbox);
            let (validates, logs_in) = (loaded.implements(World::Validator), loaded.implements(World::Login));
            if loaded.has_setup() {
                // What setup read is in the image the reviews start from: a
                // change of a granted file means a new setup, at a reload.
                watched.extend(sandbox.policy.files.granted().map(std::path::Path::to_path_buf));
            }
            if logs_in && config.login.is_none() {
                return Err(fail(
                    "it is a login backend: add a [login] section with signing-key-file so the server can issue tokens"
                        .into(),
                ));
            }
            let backend = Arc::new(WasmBackend { runtime: Arc::clone(runtime), plugin: loaded, sandbox });
            let identities = IdentityPolicy::new(&entry.identities).map_err(fail)?;
            validators.push(Validator {
                name: entry.name.clone(),
                identities: Arc::new(identities),
                token_prefix: entry.token_prefix.clone(),
                audiences: entry.audiences.clone(),
                backend: validates.then(|| Arc::clone(&backend) as Arc<dyn Backend>),
                login: logs_in.then_some(backend as Arc<dyn LoginBackend>),
            });
        }
        let issuer = match &config.login {
            Some(login) => {
                watched.push(login.signing_key_file.clone());
                watched.extend(login.verification_key_files.iter().cloned());
                Some(Arc::new(
                    TokenIssuer::new(login)
                        .map_err(|e| BuildError { name: "[login]".into(), message: e.to_string() })?,
                ))
            }
            None => None,
        };
        Ok(Self { validators, shares, slots, issuer, watched, oci_tags, plugin_policy: config.plugins.clone() })
    }

    /// Run every validator's setup (`validator-setup`), as a load must before
    /// the set serves: a validator whose setup fails makes the whole set unusable.
    ///
    /// # Errors
    ///
    /// The first validator whose setup fails, with why.
    pub async fn setup(&self) -> Result<(), BuildError> {
        for validator in &self.validators {
            if let Some(backend) = &validator.backend {
                backend
                    .setup()
                    .await
                    .map_err(|e| BuildError { name: validator.name.clone(), message: format!("setup failed: {e}") })?;
            }
        }
        Ok(())
    }

    /// Sign and verify server-issued tokens with `issuer`.
    pub fn with_issuer(mut self, issuer: Arc<TokenIssuer>) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// The login backend called `name`, with the identities it may assert.
    pub fn login_backend(&self, name: &str) -> Option<(Arc<dyn LoginBackend>, Arc<IdentityPolicy>)> {
        self.validators
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.login.clone().map(|login| (login, Arc::clone(&v.identities))))
    }

    /// Wait (at most the queue timeout) for a slot to run the plugin of the
    /// validator called `name`: one of its share, then one of the pool.
    pub async fn slot_for(&self, name: &str) -> Option<SlotPermit> {
        let index = self.validators.iter().position(|v| v.name == name)?;
        self.slot(index).await
    }

    async fn slot(&self, index: usize) -> Option<SlotPermit> {
        let share = Arc::clone(self.shares.get(index)?);
        let pool = Arc::clone(&self.slots.pool);
        tokio::time::timeout(self.slots.queue_timeout, async move {
            let share = share.acquire_owned().await.ok()?;
            let pool = pool.acquire_owned().await.ok()?;
            Some(SlotPermit { _share: share, _pool: pool })
        })
        .await
        .ok()
        .flatten()
    }

    /// How many validators there are.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// The validators in order, each with what it does.
    pub fn describe(&self) -> Vec<String> {
        self.validators
            .iter()
            .map(|v| {
                let role = match (v.backend.is_some(), v.login.is_some()) {
                    (true, true) => "validates tokens and logs users in",
                    (false, true) => "logs users in (the server issues the tokens)",
                    _ => "validates tokens",
                };
                let prefix = v.token_prefix.as_ref().map(|p| format!(", tokens starting `{p}`")).unwrap_or_default();
                format!("{}: {role}{prefix}", v.name)
            })
            .collect()
    }

    /// Run `token` through the validators in order; the first that
    /// authenticates wins.
    pub async fn review(
        &self,
        token: &str,
        audiences: &[String],
        metrics: &Metrics,
        rechecks: &RecheckCache,
    ) -> Verdict {
        // The server's own tokens first: a signature check, no network.
        if let Some(issuer) = &self.issuer {
            match issuer.verify(token) {
                Verified::NotOurs => {}
                Verified::Invalid(reason) => return Verdict::Denied { reason },
                Verified::Valid(claims) => {
                    return self.review_issued(issuer, claims, audiences, metrics, rechecks).await;
                }
            }
        }
        let mut reasons = Vec::new();
        let mut transient = None;
        let mut throttled = None;
        let mut routed = false;
        for (index, validator) in self.validators.iter().enumerate() {
            let Some(backend) = &validator.backend else { continue };
            if validator.token_prefix.as_deref().is_some_and(|p| !token.starts_with(p)) {
                continue;
            }
            routed = true;
            let Some(permit) = self.slot(index).await else { return Verdict::Busy };
            let outcome = backend.review(token, audiences).await;
            drop(permit);
            match outcome {
                Ok(ReviewOutcome::Authenticated(accepted)) => {
                    let offered =
                        if accepted.audiences.is_empty() { validator.audiences.clone() } else { accepted.audiences };
                    match intersect_audiences(audiences, &offered) {
                        Some(audiences) => {
                            let user = UserInfo::from(accepted.user);
                            if let Err(refusal) = validator.identities.check(&user) {
                                tracing::warn!(validator = %validator.name, "identity refused: {refusal}");
                                metrics.identity_refusal(&validator.name, refusal.kind);
                                reasons.push(format!("{}: {refusal}", validator.name));
                                continue;
                            }
                            return Verdict::Authenticated { validator: validator.name.clone(), user, audiences };
                        }
                        None => reasons
                            .push(format!("{}: the token is not valid for the requested audiences", validator.name)),
                    }
                }
                Ok(ReviewOutcome::Rejected(reason)) => reasons.push(format!("{}: {reason}", validator.name)),
                Err(error) => {
                    metrics.plugin_failure(&validator.name, failure_kind(&error));
                    tracing::warn!(validator = %validator.name, "{error}");
                    if error.is_throttled() {
                        throttled = Some(format!("{}: {error}", validator.name));
                    } else if error.is_transient() {
                        transient = Some(format!("{}: {error}", validator.name));
                    }
                    reasons.push(format!("{}: {error}", validator.name));
                }
            }
        }
        if let Some(reason) = transient {
            return Verdict::Transient { reason };
        }
        if let Some(reason) = throttled {
            return Verdict::Throttled { reason };
        }
        if !routed {
            return Verdict::Denied { reason: "no validator handles tokens like this one".into() };
        }
        Verdict::Denied { reason: reasons.join("; ") }
    }
}

impl ValidatorSet {
    /// A token this server issued: valid for the requested audiences, and its
    /// user re-checked with the login backend when the last check is stale.
    async fn review_issued(
        &self,
        issuer: &TokenIssuer,
        claims: Claims,
        audiences: &[String],
        metrics: &Metrics,
        rechecks: &RecheckCache,
    ) -> Verdict {
        let Some(audiences) = intersect_audiences(audiences, &claims.aud) else {
            return Verdict::Denied { reason: "the credbroker token is not valid for the requested audiences".into() };
        };
        let Some((login, identities)) = self.login_backend(&claims.val) else {
            return Verdict::Denied {
                reason: format!(
                    "the token was issued by login backend `{}`, which is no longer configured",
                    claims.val
                ),
            };
        };
        let mut user = UserInfo {
            username: claims.sub.clone(),
            uid: claims.uid.clone(),
            groups: claims.groups.clone(),
            extra: Default::default(),
        };
        let recheck = Duration::from_secs(issuer.config().recheck_seconds);
        if !recheck.is_zero() {
            let current = match rechecks.get(&claims.val, &claims.sub, recheck) {
                Some(current) => current,
                None => {
                    let Some(permit) = self.slot_for(&claims.val).await else { return Verdict::Busy };
                    let looked_up = login.lookup(&claims.sub).await;
                    drop(permit);
                    match looked_up {
                        Ok(current) => {
                            let current = current.map(UserInfo::from);
                            if let Some(user) = &current
                                && let Err(refusal) = identities.check(user)
                            {
                                tracing::warn!(validator = %claims.val, "identity refused: {refusal}");
                                metrics.identity_refusal(&claims.val, refusal.kind);
                                return Verdict::Denied { reason: format!("{}: {refusal}", claims.val) };
                            }
                            rechecks.put(&claims.val, &claims.sub, current.clone());
                            current
                        }
                        Err(error) => {
                            metrics.plugin_failure(&claims.val, failure_kind(&error));
                            return if error.is_transient() {
                                Verdict::Transient {
                                    reason: format!("{}: cannot re-check the user: {error}", claims.val),
                                }
                            } else {
                                Verdict::Denied { reason: format!("{}: cannot re-check the user: {error}", claims.val) }
                            };
                        }
                    }
                }
            };
            match current {
                Some(current) => {
                    user.groups = current.groups;
                    if !current.uid.is_empty() {
                        user.uid = current.uid;
                    }
                }
                None => {
                    return Verdict::Denied {
                        reason: format!("{}: user `{}` no longer exists", claims.val, claims.sub),
                    };
                }
            }
        }
        Verdict::Authenticated { validator: claims.val, user, audiences }
    }
}

/// The audiences to report: `None` when the token is not valid for any
/// requested audience. A validator that names no audiences is audience-agnostic:
/// it reports none, which the API server reads as its own.
fn intersect_audiences(requested: &[String], offered: &[String]) -> Option<Vec<String>> {
    if requested.is_empty() || offered.is_empty() {
        return Some(if requested.is_empty() { offered.to_vec() } else { Vec::new() });
    }
    let both: Vec<String> = requested.iter().filter(|a| offered.contains(a)).cloned().collect();
    (!both.is_empty()).then_some(both)
}

fn failure_kind(error: &RunError) -> &'static str {
    match error {
        RunError::Plugin { .. } => "plugin_error",
        RunError::Limit { limit: LimitExceeded::CpuTime(_), .. } => "cpu_limit",
        RunError::Limit { limit: LimitExceeded::Memory(_), .. } => "memory_limit",
        RunError::Limit { .. } => "limit",
        RunError::Timeout { .. } => "timeout",
        RunError::StackExhausted { .. } => "stack",
        RunError::Exited { .. } => "exit",
        RunError::Crashed { .. } => "trap",
        RunError::BadResult { .. } => "bad_result",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn audiences_intersect_like_the_apiserver_expects() {
        assert_eq!(intersect_audiences(&s(&["a", "b"]), &s(&["b", "c"])), Some(s(&["b"])));
        assert_eq!(intersect_audiences(&s(&["a"]), &s(&["c"])), None);
        assert_eq!(intersect_audiences(&s(&["a"]), &[]), Some(Vec::new()));
        assert_eq!(intersect_audiences(&[], &s(&["c"])), Some(s(&["c"])));
        assert_eq!(intersect_audiences(&[], &[]), Some(Vec::new()));
    }
}
