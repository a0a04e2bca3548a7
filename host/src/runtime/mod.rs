//! Loading, checking and running plugins in the sandbox.
//!
//! A [`Runtime`] owns the wasmtime engine, the artifact cache and the linker
//! with every host capability. [`Runtime::load`] turns a located plugin into a
//! [`LoadedPlugin`]: compiled (or loaded precompiled), checked against its world,
//! pre-linked. Each call then runs in a fresh store with the limits of its
//! [`Sandbox`]: nothing from one call survives into the next. Every call is
//! metered ([`crate::boundary::meter`]) and every host call it makes goes
//! through the run's [`Boundary`]; what the plugin returns is checked against
//! `max-call-bytes` and its texts are redacted and escaped before anyone sees
//! them.

pub mod artifacts;
pub mod engine;
pub mod snapshot;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use self::artifacts::{ArtifactCache, CompileError};
pub use self::engine::Allocation;
use crate::bindings::LoginOutcome;
use crate::bindings::login::LoginPre;
use crate::bindings::provider::ProviderPre;
use crate::bindings::types::{
    Credential, CredentialRequest, CredentialSecret, PluginError, ReviewOutcome, TokenReview, UserInfo,
};
use crate::bindings::validator::ValidatorPre;
use crate::bindings::validator_with_setup::ValidatorWithSetupPre;
use crate::boundary::Boundary;
use crate::boundary::memory::{MemoryAccount, ResourceGuard};
use crate::boundary::meter::{CpuMeter, Metered};
use crate::boundary::output::{PluginOutput, SecretError};
use crate::boundary::redact::Redactor;
use crate::boundary::wire::WireSize;
use crate::capabilities::{CapabilityPolicy, GrantError, Grants, HostState, PluginSetup, StateStore, Terminal};
pub use crate::contract::{ComponentShape, World};
use crate::limits::{LimitExceeded, Limits};
use crate::plugin::PluginRef;
use crate::settings::ResolvedSettings;

/// How often the engine's epoch advances: how often a running plugin's CPU
/// account is checked.
const EPOCH_TICK: Duration = Duration::from_millis(5);

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

/// Why a plugin call produced no result. Every text in it that came from the
/// plugin is redacted and escaped.
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
    #[error("plugin `{plugin}` did not finish within its time limit of {} ms (timeout-ms)", .limit.as_millis())]
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
    /// The plugin called WASI `exit` instead of returning.
    #[error("plugin `{plugin}` exited (status {code}) instead of returning a result")]
    Exited {
        /// The plugin.
        plugin: String,
        /// The exit status it gave.
        code: i32,
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

/// What one plugin may do: its grants (with its settings, terminal and
/// store) and its limits. Built once from the configuration and shared by
/// every call.
pub struct Sandbox {
    /// The checked grants of every capability.
    pub policy: Arc<CapabilityPolicy>,
    /// Resource limits.
    pub limits: Limits,
    /// The settings' secrets, found in every run's texts.
    secrets: Redactor,
}

/// What a [`Sandbox`] is made of.
pub struct SandboxSpec<'a> {
    /// Resolved settings (`config` capability).
    pub settings: ResolvedSettings,
    /// The operator's grants.
    pub grants: &'a Grants,
    /// Resource limits.
    pub limits: Limits,
    /// Where prompts go.
    pub terminal: Arc<dyn Terminal>,
    /// The plugin's key-value store (`state` capability).
    pub state: StateStore,
}

impl Sandbox {
    /// Check the grants and build the sandbox.
    ///
    /// # Errors
    ///
    /// The first grant that is malformed or unknown, or a granted
    /// environment over `max-call-bytes` or with too many secrets to redact.
    pub fn new(spec: SandboxSpec<'_>) -> Result<Self, GrantError> {
        let mut secrets = Redactor::new();
        for secret in spec.settings.secrets() {
            secrets.add(secret).map_err(|e| GrantError::Invalid {
                key: "settings",
                message: format!("the settings hold too many secrets to redact: {e}"),
            })?;
        }
        let setup = PluginSetup {
            settings: Arc::new(spec.settings),
            terminal: spec.terminal,
            state: spec.state,
            tls: Arc::default(),
        };
        let policy = CapabilityPolicy::new(spec.grants, setup)?;
        for secret in policy.secrets() {
            secrets.add(secret).map_err(|e| GrantError::Invalid {
                key: "env",
                message: format!("the granted variables hold too many secrets to redact: {e}"),
            })?;
        }
        // WASI hands the environment over in one call: it is bounded like one.
        let environment = policy.env.bytes();
        if environment as u64 > spec.limits.max_call_bytes {
            return Err(GrantError::Invalid {
                key: "env",
                message: format!(
                    "the granted variables hold {environment} bytes, over the per-call limit (max-call-bytes) of {} bytes",
                    spec.limits.max_call_bytes
                ),
            });
        }
        Ok(Self { policy: Arc::new(policy), limits: spec.limits, secrets })
    }
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
        crate::capabilities::link_all(&mut linker).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
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
            .map_err(|error| LoadError::Compile { plugin: display_name(&plugin.name), error })?;
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
        let name = display_name(&plugin.name);
        let contract = |detail: String| LoadError::Contract { plugin: name.clone(), detail };
        let implemented = shape.check_any(worlds).map_err(contract)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            contract(format!(
                "it needs an import this credbroker does not provide ({}): {e:#}",
                crate::contract::CONTRACT
            ))
        })?;
        let mut loaded = LoadedPlugin {
            name: name.clone().into(),
            sha256: plugin.sha256.clone(),
            shape,
            provider: None,
            validator: None,
            validator_setup: None,
            wasm: None,
            prepared: OnceLock::new(),
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
                        // Kept to instrument for the snapshot at setup.
                        let wasm = plugin.wasm().map_err(|e| contract(format!("cannot read it again: {e}")))?;
                        loaded.wasm = Some(Arc::new(wasm));
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

/// A plugin's name as messages show it.
fn display_name(name: &str) -> String {
    crate::boundary::text::name(name).into_owned()
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
    /// Its component, when it has a setup to snapshot.
    wasm: Option<Arc<Vec<u8>>>,
    /// The validator as its last setup left it, which every review
    /// instantiates (see [`snapshot`]).
    prepared: OnceLock<Prepared>,
    login: Option<LoginPre<HostState>>,
}

/// What a validator's setup leaves for its reviews: the snapshot of its
/// instance and the table it filled (the `table` capability).
struct Prepared {
    validator: ValidatorPre<HostState>,
    table: Arc<crate::capabilities::table::Entries>,
}

/// One call's store and what the host needs to judge its outcome.
struct Call {
    store: Store<HostState>,
    output: PluginOutput,
    meter: Arc<CpuMeter>,
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

    /// Whether it exports `validator-setup`, which [`LoadedPlugin::setup`] runs.
    pub fn has_setup(&self) -> bool {
        self.validator_setup.is_some()
    }

    fn new_call(&self, engine: &Engine, sandbox: &Sandbox, interactive: bool) -> Result<Call, RunError> {
        let limits = &sandbox.limits;
        let memory = MemoryAccount::new(limits);
        let meter = CpuMeter::new(limits.cpu_time());
        let log_bytes = usize::try_from(limits.log_bytes).unwrap_or(usize::MAX);
        let output = PluginOutput::new(Arc::clone(&self.name), log_bytes, sandbox.secrets.clone(), memory.clone());
        let boundary = Boundary::new(
            Arc::clone(&self.name),
            limits.clone(),
            interactive,
            output.clone(),
            memory.clone(),
            Arc::clone(&meter),
        );
        let guard = ResourceGuard::new(limits, memory);
        let state = HostState::new(&sandbox.policy, boundary, guard)
            .map_err(|limit| RunError::Limit { plugin: self.name.to_string(), limit })?;
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.guard);
        let cpu_ms = limits.cpu_ms;
        let checked = Arc::clone(&meter);
        // Checked at every tick while the plugin's code runs (host work is
        // charged by the meter and checked when the plugin resumes). Yielding
        // at each tick keeps a busy plugin from monopolising a worker thread
        // of the webhook; the time it waits to be polled again is not charged.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if checked.over_budget() {
                Err(LimitExceeded::CpuTime(cpu_ms).into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(Call { store, output, meter })
    }

    /// Run `work` (instantiate and call) in `call`, metered and under the
    /// wall-clock limit, and name whatever stopped it.
    async fn run<T>(
        &self,
        sandbox: &Sandbox,
        call: &mut Call,
        work: impl AsyncFnOnce(&mut Store<HostState>) -> wasmtime::Result<Result<T, PluginError>>,
    ) -> Result<T, RunError> {
        let timeout = sandbox.limits.timeout();
        let store = &mut call.store;
        let metered = Metered::new(tokio::time::timeout(timeout, work(store)), Arc::clone(&call.meter));
        let outcome = metered.await;
        let plugin = self.name.to_string();
        // Host work at the very end of the call is charged too.
        if let Ok(Ok(_)) = &outcome
            && call.meter.over_budget()
        {
            return Err(RunError::Limit { plugin, limit: LimitExceeded::CpuTime(sandbox.limits.cpu_ms) });
        }
        match outcome {
            Err(_) => Err(RunError::Timeout { plugin, limit: timeout }),
            Ok(Err(error)) => Err(self.classify(error, &call.output, &sandbox.limits)),
            Ok(Ok(Err(error))) => Err(self.plugin_error(error, &call.output)),
            Ok(Ok(Ok(value))) => Ok(value),
        }
    }

    fn classify(&self, error: wasmtime::Error, output: &PluginOutput, limits: &Limits) -> RunError {
        let plugin = self.name.to_string();
        if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
            return RunError::Limit { plugin, limit: *limit };
        }
        if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return RunError::Exited { plugin, code: exit.0 };
        }
        let text = format!("{error:#}");
        // wasmtime names these only in text.
        if text.contains("instance count too high") || text.contains("maximum concurrent core instance limit") {
            return RunError::Limit { plugin, limit: LimitExceeded::Instances(limits.instances) };
        }
        if let Some(rest) = text.split("requested len ").nth(1)
            && let Some((bytes, limit)) = rest.split_once(" exceeds limit ")
        {
            let number = |s: &str| s.trim().trim_end_matches(|c: char| !c.is_ascii_digit()).parse::<u64>().unwrap_or(0);
            return RunError::Limit {
                plugin,
                limit: LimitExceeded::CallBytes { call: "wasi:random", bytes: number(bytes), limit: number(limit) },
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::StackOverflow) => RunError::StackExhausted { plugin },
            Some(Trap::MemoryOutOfBounds) => RunError::Crashed {
                plugin,
                trap: "out-of-bounds memory access (in Rust plugins usually a stack overflow from deep recursion)"
                    .into(),
                output: output.stderr_tail(),
            },
            Some(trap) => RunError::Crashed { plugin, trap: trap.to_string(), output: output.stderr_tail() },
            None => RunError::Crashed { plugin, trap: output.clean(&text), output: output.stderr_tail() },
        }
    }

    /// A plugin's error, its message redacted and escaped: it may quote a
    /// secret it was handed, or try to drive the terminal that shows it.
    fn plugin_error(&self, error: PluginError, output: &PluginOutput) -> RunError {
        let plugin = self.name.to_string();
        let clean = |m: &str| output.clean(m);
        let error = match error {
            PluginError::Misconfigured(m) => PluginError::Misconfigured(clean(&m)),
            PluginError::Denied(m) => PluginError::Denied(clean(&m)),
            PluginError::Unavailable(m) => PluginError::Unavailable(clean(&m)),
            PluginError::Throttled(m) => PluginError::Throttled(clean(&m)),
            PluginError::Failed(m) => PluginError::Failed(clean(&m)),
        };
        RunError::Plugin { plugin, error }
    }

    /// Refuse a result over `max-call-bytes`.
    fn check_size(&self, what: &str, size: usize, limits: &Limits) -> Result<(), RunError> {
        if size as u64 > limits.max_call_bytes {
            return Err(RunError::BadResult {
                plugin: self.name.to_string(),
                detail: format!(
                    "{what} of {size} bytes, over the per-call limit (max-call-bytes) of {} bytes",
                    limits.max_call_bytes
                ),
            });
        }
        Ok(())
    }

    /// Ask a provider for a credential.
    ///
    /// # Errors
    ///
    /// [`RunError`] when the plugin fails, hits a limit, or returns an
    /// unusable credential.
    pub async fn get_credential(
        &self,
        engine: &Engine,
        sandbox: &Sandbox,
        request: CredentialRequest,
    ) -> Result<Credential, RunError> {
        let Some(pre) = &self.provider else {
            return Err(self.not_a(World::Provider));
        };
        let mut call = self.new_call(engine, sandbox, request.interactive)?;
        let credential = self
            .run(sandbox, &mut call, async |store| {
                let provider = pre.instantiate_async(&mut *store).await?;
                provider.credbroker_plugin_credential_provider().call_get_credential(&mut *store, &request).await
            })
            .await?;
        self.check_size("a credential", credential.wire_size(), &sandbox.limits)?;
        if let CredentialSecret::Token(token) = &credential.secret
            && let Err(e) = call.output.mark_secret(token)
        {
            tracing::debug!("the credential is not redacted from later lines: {e}");
        }
        Ok(credential)
    }

    /// Run a validator's `validator-setup` once, as a load does, and keep
    /// the instance it leaves as the image every review starts from: an
    /// error means the configuration cannot serve. A validator without the
    /// export needs no setup. Where the image cannot be taken (a component
    /// the pre-initializer does not handle, a setup that leaves a host
    /// resource open) the load warns and each review runs the setup itself.
    ///
    /// # Errors
    ///
    /// [`RunError`] when setup fails or hits a limit.
    pub async fn setup(&self, runtime: &Runtime, sandbox: &Sandbox) -> Result<(), RunError> {
        let (Some(pre), Some(wasm)) = (&self.validator_setup, &self.wasm) else {
            return if self.validator.is_some() { Ok(()) } else { Err(self.not_a(World::Validator)) };
        };
        let engine = runtime.engine();
        let started = std::time::Instant::now();
        let instrumented = match snapshot::instrument(wasm) {
            Ok(instrumented) => instrumented,
            Err(e) => return self.setup_without_snapshot(engine, pre, sandbox, &e).await,
        };
        let digest = crate::plugin::sha256_hex(&instrumented.wasm);
        let component = runtime
            .artifacts
            .load_or_compile(engine, &digest, || Ok(instrumented.wasm.clone()))
            .map_err(|e| self.bad_snapshot(format!("the instrumented component does not compile: {e}")))?;
        let with_setup = runtime
            .linker
            .instantiate_pre(&component)
            .and_then(ValidatorWithSetupPre::new)
            .map_err(|e| self.bad_snapshot(format!("{e:#}")))?;
        let mut call = self.new_call(engine, sandbox, false)?;
        let instance = self
            .run(sandbox, &mut call, async |store| {
                let instance = with_setup.instance_pre().instantiate_async(&mut *store).await?;
                let validator = crate::bindings::validator_with_setup::ValidatorWithSetup::new(&mut *store, &instance)?;
                Ok(validator.credbroker_plugin_validator_setup().call_setup(&mut *store).await?.map(|()| instance))
            })
            .await?;
        match snapshot::take(engine, &instrumented, &mut call.store, instance).await {
            Ok(image) => {
                let prepared = runtime
                    .linker
                    .instantiate_pre(&image)
                    .and_then(ValidatorPre::new)
                    .map_err(|e| self.bad_snapshot(format!("{e:#}")))?;
                let table = call.store.data_mut().freeze_table();
                tracing::debug!(
                    plugin = %self.name,
                    ms = started.elapsed().as_millis() as u64,
                    table_entries = table.len(),
                    table_bytes = table.bytes(),
                    "set up and snapshotted"
                );
                let _ = self.prepared.set(Prepared { validator: prepared, table });
                Ok(())
            }
            Err(e) => self.setup_without_snapshot(engine, pre, sandbox, &e).await,
        }
    }

    /// Setup without an image: run it once (an error fails the load), and
    /// every review runs it again in its own instance.
    async fn setup_without_snapshot(
        &self,
        engine: &Engine,
        pre: &ValidatorWithSetupPre<HostState>,
        sandbox: &Sandbox,
        why: &snapshot::SnapshotError,
    ) -> Result<(), RunError> {
        tracing::warn!(plugin = %self.name, "{why}; its setup will run in every review");
        let mut call = self.new_call(engine, sandbox, false)?;
        self.run(sandbox, &mut call, async |store| {
            let validator = pre.instantiate_async(&mut *store).await?;
            validator.credbroker_plugin_validator_setup().call_setup(&mut *store).await
        })
        .await
    }

    fn bad_snapshot(&self, detail: String) -> RunError {
        RunError::BadResult { plugin: self.name.to_string(), detail: format!("cannot snapshot its setup: {detail}") }
    }

    /// Whether reviews start from the image of its setup.
    pub fn is_prepared(&self) -> bool {
        self.prepared.get().is_some()
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
        let mut call = self.new_call(engine, sandbox, false)?;
        // The token under review is a secret of this run like any other: it
        // must not come back in a log line or a rejection reason.
        call.output.mark_secret(&review.token).map_err(|e| self.secret_error(e))?;
        let outcome = self
            .run(sandbox, &mut call, async |store| {
                if let Some(prepared) = self.prepared.get() {
                    store.data_mut().use_frozen_table(Arc::clone(&prepared.table));
                    let validator = prepared.validator.instantiate_async(&mut *store).await?;
                    return validator.credbroker_plugin_token_validator().call_validate(&mut *store, &review).await;
                }
                if let Some(with_setup) = &self.validator_setup {
                    let validator = with_setup.instantiate_async(&mut *store).await?;
                    if let Err(error) = validator.credbroker_plugin_validator_setup().call_setup(&mut *store).await? {
                        return Ok(Err(error));
                    }
                    return validator.credbroker_plugin_token_validator().call_validate(&mut *store, &review).await;
                }
                let validator = pre.instantiate_async(&mut *store).await?;
                validator.credbroker_plugin_token_validator().call_validate(&mut *store, &review).await
            })
            .await?;
        self.check_size("a review outcome", outcome.wire_size(), &sandbox.limits)?;
        Ok(match outcome {
            ReviewOutcome::Authenticated(accepted) => ReviewOutcome::Authenticated(accepted),
            ReviewOutcome::Rejected(reason) => ReviewOutcome::Rejected(call.output.clean(&reason)),
        })
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
        let mut call = self.new_call(engine, sandbox, false)?;
        call.output.mark_secret(password).map_err(|e| self.secret_error(e))?;
        let outcome = self
            .run(sandbox, &mut call, async |store| {
                let login = pre.instantiate_async(&mut *store).await?;
                login.credbroker_plugin_password_login().call_authenticate(&mut *store, username, password).await
            })
            .await?;
        self.check_size("a login outcome", outcome.wire_size(), &sandbox.limits)?;
        Ok(match outcome {
            LoginOutcome::Authenticated(user) => LoginOutcome::Authenticated(user),
            LoginOutcome::Rejected(reason) => LoginOutcome::Rejected(call.output.clean(&reason)),
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
        let mut call = self.new_call(engine, sandbox, false)?;
        let user = self
            .run(sandbox, &mut call, async |store| {
                let login = pre.instantiate_async(&mut *store).await?;
                login.credbroker_plugin_password_login().call_lookup(&mut *store, username).await
            })
            .await?;
        self.check_size("a user", user.wire_size(), &sandbox.limits)?;
        Ok(user)
    }

    fn secret_error(&self, error: SecretError) -> RunError {
        RunError::Limit { plugin: self.name.to_string(), limit: LimitExceeded::from(error) }
    }

    fn not_a(&self, world: World) -> RunError {
        RunError::BadResult { plugin: self.name.to_string(), detail: format!("it was not loaded as a {world}") }
    }
}
