//! Loading, checking and running plugins in the sandbox.
//!
//! A [`Runtime`] owns the wasmtime engine, the artifact cache and the linker
//! with every host capability. [`Runtime::load`] turns a located plugin into a
//! [`LoadedPlugin`]: compiled (or loaded precompiled), checked against its world,
//! pre-linked. Each call then runs in a fresh store with the limits of its
//! [`Sandbox`]: nothing from one call survives into the next.

pub mod artifacts;
pub mod bindings;
pub mod engine;
pub mod limits;
pub mod output;
pub mod world;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use self::artifacts::{ArtifactCache, CompileError};
use self::bindings::LoginOutcome;
use self::bindings::login::LoginPre;
use self::bindings::provider::ProviderPre;
use self::bindings::types::{
    Credential, CredentialRequest, CredentialSecret, PluginError, ReviewOutcome, TokenReview, UserInfo,
};
use self::bindings::validator::ValidatorPre;
use self::bindings::validator_with_setup::ValidatorWithSetupPre;
pub use self::engine::Allocation;
use self::limits::{LimitExceeded, Limits, ResourceGuard};
use self::output::GuestOutput;
pub use self::world::{ComponentShape, World};
use crate::capabilities::{CapabilityPolicy, PluginContext, PluginLog, Terminal};
use crate::plugin::PluginRef;
use crate::settings::ResolvedSettings;

/// How often the engine's epoch advances: the granularity of CPU limits.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Everything a plugin's store holds.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    guard: ResourceGuard,
    ctx: PluginContext,
    /// Epoch ticks observed while the plugin's code was running: its CPU time,
    /// in units of [`EPOCH_TICK`].
    ticks: u64,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A plugin that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It does not compile.
    #[error("plugin `{plugin}`: {error}")]
    Compile {
        /// The plugin.
        plugin: String,
        /// Why.
        error: CompileError,
    },
    /// It does not implement the world it is used as, or imports what the
    /// host does not provide.
    #[error("plugin `{plugin}`: {detail}")]
    Contract {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        detail: String,
    },
    /// The engine could not be set up.
    #[error("cannot start the WebAssembly runtime: {0}")]
    Engine(String),
}

/// Why a plugin call produced no result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The plugin returned an error.
    #[error("plugin `{plugin}` failed: {}", plugin_error_message(.error))]
    Plugin {
        /// The plugin.
        plugin: String,
        /// What it said.
        error: PluginError,
    },
    /// The plugin ran into one of its limits.
    #[error("plugin `{plugin}` {limit}")]
    Limit {
        /// The plugin.
        plugin: String,
        /// Which limit.
        limit: LimitExceeded,
    },
    /// The call took longer than the wall-clock limit.
    #[error("plugin `{plugin}` did not finish within its time limit of {} ms", .limit.as_millis())]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The limit.
        limit: Duration,
    },
    /// The plugin's own stack overflowed.
    #[error("plugin `{plugin}` exhausted its stack (deep recursion)")]
    StackExhausted {
        /// The plugin.
        plugin: String,
    },
    /// The plugin trapped: a panic, an invalid memory access, an abort.
    #[error("plugin `{plugin}` crashed: {trap}{}", last_output(.output))]
    Crashed {
        /// The plugin.
        plugin: String,
        /// The trap.
        trap: String,
        /// The last lines it wrote to stderr (redacted), e.g. a panic message.
        output: Vec<String>,
    },
    /// The plugin returned something the host cannot use.
    #[error("plugin `{plugin}` returned an unusable result: {detail}")]
    BadResult {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        detail: String,
    },
}

fn plugin_error_message(error: &PluginError) -> String {
    match error {
        PluginError::Misconfigured(m) => format!("misconfigured: {m}"),
        PluginError::Denied(m) => format!("denied: {m}"),
        PluginError::Unavailable(m) => format!("unavailable: {m}"),
        PluginError::Throttled(m) => format!("throttled: {m}"),
        PluginError::Failed(m) => m.clone(),
    }
}

fn last_output(lines: &[String]) -> String {
    if lines.is_empty() { String::new() } else { format!("; its last output: {}", lines.join(" | ")) }
}

impl RunError {
    /// Whether retrying later may succeed: the plugin's backend was unavailable
    /// or the call timed out.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Plugin { error: PluginError::Unavailable(_) | PluginError::Throttled(_), .. } | Self::Timeout { .. }
        )
    }

    /// Whether a backend asked to slow down.
    pub fn is_throttled(&self) -> bool {
        matches!(self, Self::Plugin { error: PluginError::Throttled(_), .. })
    }
}

/// What one plugin may do: its settings, grants and limits. Built once from the
/// configuration and shared by every call.
pub struct Sandbox {
    /// Resolved settings (`config` capability).
    pub settings: Arc<ResolvedSettings>,
    /// The checked grants.
    pub policy: Arc<CapabilityPolicy>,
    /// Resource limits.
    pub limits: Limits,
    /// Where prompts go.
    pub terminal: Arc<dyn Terminal>,
    /// The plugin's key-value store (`state` capability).
    pub state: crate::capabilities::state::StateStore,
}

/// Options for [`Runtime::new`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Instance allocation strategy.
    pub allocation: Allocation,
    /// Where precompiled artifacts are cached; `None` compiles every time.
    pub artifact_dir: Option<PathBuf>,
}

/// The sandboxed plugin runtime.
pub struct Runtime {
    engine: Engine,
    artifacts: ArtifactCache,
    linker: Linker<HostState>,
}

impl Runtime {
    /// Set up the engine, the artifact cache and the linker.
    ///
    /// # Errors
    ///
    /// [`LoadError::Engine`] when wasmtime cannot start on this machine.
    pub fn new(options: RuntimeOptions) -> Result<Self, LoadError> {
        let engine = engine::new_engine(options.allocation).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        start_epoch_ticker(&engine);
        let artifacts = ArtifactCache::new(options.artifact_dir, &engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        bindings::provider::Provider::add_to_linker::<HostState, HasSelf<PluginContext>>(&mut linker, |s| &mut s.ctx)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        Ok(Self { engine, artifacts, linker })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The artifact cache.
    pub fn artifacts(&self) -> &ArtifactCache {
        &self.artifacts
    }

    /// Compile (or load precompiled) `plugin` and read its shape without
    /// checking it against a world.
    ///
    /// # Errors
    ///
    /// [`LoadError::Compile`].
    pub fn compile(&self, plugin: &PluginRef) -> Result<(Component, ComponentShape), LoadError> {
        let component = self
            .artifacts
            .load_or_compile(&self.engine, &plugin.sha256, || plugin.wasm())
            .map_err(|error| LoadError::Compile { plugin: plugin.name.clone(), error })?;
        let shape = ComponentShape::of(&self.engine, &component);
        Ok((component, shape))
    }

    /// Load `plugin` for use as `world`.
    ///
    /// # Errors
    ///
    /// [`LoadError`] when it does not compile, does not implement `world`, or
    /// imports something this host does not provide.
    pub fn load(&self, plugin: &PluginRef, world: World) -> Result<LoadedPlugin, LoadError> {
        self.load_any(plugin, &[world])
    }

    /// Load `plugin` for use as any of `worlds` it implements (at least one).
    ///
    /// # Errors
    ///
    /// As for [`Runtime::load`].
    pub fn load_any(&self, plugin: &PluginRef, worlds: &[World]) -> Result<LoadedPlugin, LoadError> {
        let (component, shape) = self.compile(plugin)?;
        let contract = |detail: String| LoadError::Contract { plugin: plugin.name.clone(), detail };
        let implemented = shape.check_any(worlds).map_err(contract)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            contract(format!("it needs an import this credbroker does not provide ({}): {e:#}", world::CONTRACT))
        })?;
        let mut loaded = LoadedPlugin {
            name: plugin.name.clone().into(),
            sha256: plugin.sha256.clone(),
            shape,
            provider: None,
            validator: None,
            validator_setup: None,
            login: None,
        };
        for world in implemented {
            match world {
                World::Provider => {
                    loaded.provider = Some(ProviderPre::new(pre.clone()).map_err(|e| contract(format!("{e:#}")))?)
                }
                World::Validator => {
                    loaded.validator = Some(ValidatorPre::new(pre.clone()).map_err(|e| contract(format!("{e:#}")))?);
                    if loaded.shape.has_validator_setup() {
                        loaded.validator_setup =
                            Some(ValidatorWithSetupPre::new(pre.clone()).map_err(|e| contract(format!("{e:#}")))?);
                    }
                }
                World::Login => {
                    loaded.login = Some(LoginPre::new(pre.clone()).map_err(|e| contract(format!("{e:#}")))?)
                }
            }
        }
        Ok(loaded)
    }
}

/// Advance `engine`'s epoch every [`EPOCH_TICK`] on a background thread, once
/// per engine, for the life of the process.
fn start_epoch_ticker(engine: &Engine) {
    static STARTED: OnceLock<()> = OnceLock::new();
    // One engine per process is the norm; a second engine (tests) gets its own
    // ticker through a weak handle below.
    let weak = engine.weak();
    let first = STARTED.set(()).is_ok();
    let spawn = std::thread::Builder::new().name("credbroker-epoch".into()).spawn(move || {
        while let Some(engine) = weak.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    });
    if let Err(e) = spawn {
        // Without the ticker CPU limits would never fire: say so loudly.
        tracing::error!(first, "cannot start the CPU-limit timer thread: {e}");
    }
}

/// A plugin ready to run: compiled, checked and pre-linked for each world it
/// was loaded as.
pub struct LoadedPlugin {
    name: Arc<str>,
    sha256: String,
    shape: ComponentShape,
    provider: Option<ProviderPre<HostState>>,
    validator: Option<ValidatorPre<HostState>>,
    /// The same validator with its `validator-setup` export, when it has one.
    validator_setup: Option<ValidatorWithSetupPre<HostState>>,
    login: Option<LoginPre<HostState>>,
}

impl LoadedPlugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 of its `.wasm`.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Its imports and exports.
    pub fn shape(&self) -> &ComponentShape {
        &self.shape
    }

    /// Whether it was loaded as `world`.
    pub fn implements(&self, world: World) -> bool {
        match world {
            World::Provider => self.provider.is_some(),
            World::Validator => self.validator.is_some(),
            World::Login => self.login.is_some(),
        }
    }

    fn new_store(&self, engine: &Engine, sandbox: &Sandbox, interactive: bool) -> (Store<HostState>, PluginLog) {
        let log = PluginLog::new(
            Arc::clone(&self.name),
            usize::try_from(sandbox.limits.log_bytes).unwrap_or(usize::MAX),
            sandbox.settings.secrets(),
        );
        let stdout = GuestOutput::new(log.clone(), "stdout");
        let stderr = GuestOutput::new(log.clone(), "stderr");
        // Nothing ambient: no preopens, no environment, no arguments, stdin
        // closed, no sockets or name lookups. Clocks and randomness only.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout)
            .stderr(stderr)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            guard: ResourceGuard::new(&sandbox.limits),
            ticks: 0,
            ctx: PluginContext {
                plugin: Arc::clone(&self.name),
                settings: Arc::clone(&sandbox.settings),
                policy: Arc::clone(&sandbox.policy),
                limits: sandbox.limits.clone(),
                interactive,
                terminal: Arc::clone(&sandbox.terminal),
                log: log.clone(),
                resources: crate::capabilities::resource_table(),
                state: crate::capabilities::state::PluginState::new(sandbox.state.clone()),
            },
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.guard);
        let cpu_ms = sandbox.limits.cpu_ms;
        let budget = sandbox.limits.cpu_time().as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1);
        let budget = u64::try_from(budget).unwrap_or(u64::MAX);
        // The deadline is always one tick ahead, so the callback runs once per
        // tick *while plugin code runs*: counting callbacks measures the
        // plugin's own time. A plugin blocked in a host call or sleeping sees
        // at most one tick for the whole wait. Yielding at each tick keeps a
        // busy plugin from monopolising a worker thread of the webhook.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            state.ticks += 1;
            if state.ticks > budget { Err(LimitExceeded::CpuTime(cpu_ms).into()) } else { Ok(UpdateDeadline::Yield(1)) }
        });
        (store, log)
    }

    fn classify(&self, error: wasmtime::Error, log: &PluginLog) -> RunError {
        let plugin = self.name.to_string();
        if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
            return RunError::Limit { plugin, limit: *limit };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::StackOverflow) => RunError::StackExhausted { plugin },
            Some(Trap::MemoryOutOfBounds) => RunError::Crashed {
                plugin,
                trap: "out-of-bounds memory access (in Rust plugins usually a stack overflow from deep recursion)"
                    .into(),
                output: log.stderr_tail(),
            },
            Some(trap) => RunError::Crashed { plugin, trap: trap.to_string(), output: log.stderr_tail() },
            None => RunError::Crashed { plugin, trap: log.redact(&format!("{error:#}")), output: log.stderr_tail() },
        }
    }

    /// Ask a provider for a credential.
    ///
    /// # Errors
    ///
    /// [`RunError`] when the plugin fails, hits a limit, or returns an
    /// unusable credential.
    ///
    /// # Panics
    ///
    /// Never; calling it on a validator returns [`RunError::BadResult`].
    pub async fn get_credential(
        &self,
        engine: &Engine,
        sandbox: &Sandbox,
        request: CredentialRequest,
    ) -> Result<Credential, RunError> {
        let Some(pre) = &self.provider else {
            return Err(self.not_a(World::Provider));
        };
        let (mut store, log) = self.new_store(engine, sandbox, request.interactive);
        let call = async {
            let provider = pre.instantiate_async(&mut store).await?;
            provider.credbroker_plugin_credential_provider().call_get_credential(&mut store, &request).await
        };
        let result = self.finish(tokio::time::timeout(sandbox.limits.timeout(), call).await, sandbox, &log)?;
        let credential = result.map_err(|error| RunError::Plugin {
            plugin: self.name.to_string(),
            error: redact_plugin_error(error, &log),
        })?;
        let size = match &credential.secret {
            CredentialSecret::Token(token) => token.len(),
            CredentialSecret::ClientCertificate(cert) => cert.certificate_pem.len() + cert.private_key_pem.len(),
        };
        if size as u64 > sandbox.limits.max_call_bytes {
            return Err(RunError::BadResult {
                plugin: self.name.to_string(),
                detail: format!(
                    "a credential of {size} bytes, over the limit of {} bytes",
                    sandbox.limits.max_call_bytes
                ),
            });
        }
        Ok(credential)
    }

    /// Whether it exports `validator-setup`, which [`LoadedPlugin::setup`] runs.
    pub fn has_setup(&self) -> bool {
        self.validator_setup.is_some()
    }

    /// Run a validator's `validator-setup` once, as a load does: an error
    /// means the configuration cannot serve. A validator without the export
    /// needs no setup.
    ///
    /// # Errors
    ///
    /// [`RunError`] when setup fails or hits a limit.
    pub async fn setup(&self, engine: &Engine, sandbox: &Sandbox) -> Result<(), RunError> {
        let Some(pre) = &self.validator_setup else {
            return if self.validator.is_some() { Ok(()) } else { Err(self.not_a(World::Validator)) };
        };
        let (mut store, log) = self.new_store(engine, sandbox, false);
        let call = async {
            let validator = pre.instantiate_async(&mut store).await?;
            validator.credbroker_plugin_validator_setup().call_setup(&mut store).await
        };
        let result = self.finish(tokio::time::timeout(sandbox.limits.timeout(), call).await, sandbox, &log)?;
        result.map_err(|error| RunError::Plugin {
            plugin: self.name.to_string(),
            error: redact_plugin_error(error, &log),
        })
    }

    /// Ask a validator about a token. A validator with `validator-setup` is
    /// set up in the review's own instance first, so the review starts from
    /// the state setup leaves.
    ///
    /// # Errors
    ///
    /// [`RunError`] when the plugin fails or hits a limit.
    pub async fn validate(
        &self,
        engine: &Engine,
        sandbox: &Sandbox,
        review: TokenReview,
    ) -> Result<ReviewOutcome, RunError> {
        let Some(pre) = &self.validator else {
            return Err(self.not_a(World::Validator));
        };
        let (mut store, log) = self.new_store(engine, sandbox, false);
        // The token under review is a secret of this run like any other.
        log.mark_secret(&review.token);
        let call = async {
            if let Some(with_setup) = &self.validator_setup {
                let validator = with_setup.instantiate_async(&mut store).await?;
                if let Err(error) = validator.credbroker_plugin_validator_setup().call_setup(&mut store).await? {
                    return Ok(Err(error));
                }
                return validator.credbroker_plugin_token_validator().call_validate(&mut store, &review).await;
            }
            let validator = pre.instantiate_async(&mut store).await?;
            validator.credbroker_plugin_token_validator().call_validate(&mut store, &review).await
        };
        let result = self.finish(tokio::time::timeout(sandbox.limits.timeout(), call).await, sandbox, &log)?;
        let outcome = result.map_err(|error| RunError::Plugin {
            plugin: self.name.to_string(),
            error: redact_plugin_error(error, &log),
        })?;
        if let ReviewOutcome::Authenticated(accepted) = &outcome {
            self.check_user_size(&accepted.user, &sandbox.limits)?;
        }
        Ok(outcome)
    }

    /// A user bigger than the per-call limit is a plugin bug (or an attack on
    /// the API server's memory); refuse it.
    fn check_user_size(&self, user: &UserInfo, limits: &Limits) -> Result<(), RunError> {
        let size = user.username.len()
            + user.uid.as_ref().map_or(0, String::len)
            + user.groups.iter().map(String::len).sum::<usize>()
            + user.extra.iter().map(|(k, v)| k.len() + v.iter().map(String::len).sum::<usize>()).sum::<usize>();
        if size as u64 > limits.max_call_bytes {
            return Err(RunError::BadResult {
                plugin: self.name.to_string(),
                detail: format!("a user of {size} bytes, over the limit of {} bytes", limits.max_call_bytes),
            });
        }
        Ok(())
    }

    /// Ask a login backend whether `password` is right for `username`.
    ///
    /// # Errors
    ///
    /// [`RunError`] when the plugin fails or hits a limit.
    pub async fn authenticate(
        &self,
        engine: &Engine,
        sandbox: &Sandbox,
        username: &str,
        password: &str,
    ) -> Result<LoginOutcome, RunError> {
        let Some(pre) = &self.login else {
            return Err(self.not_a(World::Login));
        };
        let (mut store, log) = self.new_store(engine, sandbox, false);
        log.mark_secret(password);
        let call = async {
            let login = pre.instantiate_async(&mut store).await?;
            login.credbroker_plugin_password_login().call_authenticate(&mut store, username, password).await
        };
        let result = self.finish(tokio::time::timeout(sandbox.limits.timeout(), call).await, sandbox, &log)?;
        result.map_err(|error| RunError::Plugin {
            plugin: self.name.to_string(),
            error: redact_plugin_error(error, &log),
        })
    }

    /// Ask a login backend about `username` now.
    ///
    /// # Errors
    ///
    /// [`RunError`] when the plugin fails or hits a limit.
    pub async fn lookup(
        &self,
        engine: &Engine,
        sandbox: &Sandbox,
        username: &str,
    ) -> Result<Option<UserInfo>, RunError> {
        let Some(pre) = &self.login else {
            return Err(self.not_a(World::Login));
        };
        let (mut store, log) = self.new_store(engine, sandbox, false);
        let call = async {
            let login = pre.instantiate_async(&mut store).await?;
            login.credbroker_plugin_password_login().call_lookup(&mut store, username).await
        };
        let result = self.finish(tokio::time::timeout(sandbox.limits.timeout(), call).await, sandbox, &log)?;
        result.map_err(|error| RunError::Plugin {
            plugin: self.name.to_string(),
            error: redact_plugin_error(error, &log),
        })
    }

    fn finish<T>(
        &self,
        outcome: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
        sandbox: &Sandbox,
        log: &PluginLog,
    ) -> Result<T, RunError> {
        match outcome {
            Err(_) => Err(RunError::Timeout { plugin: self.name.to_string(), limit: sandbox.limits.timeout() }),
            Ok(Err(error)) => Err(self.classify(error, log)),
            Ok(Ok(value)) => Ok(value),
        }
    }

    fn not_a(&self, world: World) -> RunError {
        RunError::BadResult { plugin: self.name.to_string(), detail: format!("it was not loaded as a {world}") }
    }
}

/// A plugin's error message may quote a secret it was handed; redact it
/// before it reaches the user or a log.
fn redact_plugin_error(error: PluginError, log: &PluginLog) -> PluginError {
    match error {
        PluginError::Misconfigured(m) => PluginError::Misconfigured(log.redact(&m)),
        PluginError::Denied(m) => PluginError::Denied(log.redact(&m)),
        PluginError::Unavailable(m) => PluginError::Unavailable(log.redact(&m)),
        PluginError::Throttled(m) => PluginError::Throttled(log.redact(&m)),
        PluginError::Failed(m) => PluginError::Failed(log.redact(&m)),
    }
}
