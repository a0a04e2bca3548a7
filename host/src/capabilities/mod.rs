//! Host capabilities: everything a plugin can reach outside its sandbox.
//!
//! One module per capability, each owning its WIT interface's host
//! implementation, its section of the operator's grants, the state one run
//! holds, and its tests ([`Capability`]). The calls themselves go through the
//! run's [`Boundary`], which bounds, charges and sanitizes them the same way
//! for every capability. The [`capabilities!`] list at the end of this file
//! registers them: adding a capability is its module, its WIT interface, and
//! one line there.
//!
//! Nothing is granted by default except `config` (the plugin's own settings),
//! `log`, `state`, `crypto` and `table`, which reach nothing outside the host. WASI
//! itself ([`wasi`]) answers with nothing ambient: its environment holds only
//! what [`env`] grants.

pub mod config;
pub mod credential_process;
pub mod crypto;
pub mod env;
pub mod files;
pub mod http;
pub mod ldap;
pub mod log;
pub mod loopback;
pub mod prompt;
pub mod state;
pub mod table;
pub mod tls;
pub mod wasi;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::boundary::memory::{Held, ResourceGuard};
use crate::boundary::{Boundary, CapView};
use crate::limits::LimitExceeded;
use crate::settings::ResolvedSettings;

pub use self::prompt::{NoTerminal, StdioTerminal, Terminal};
pub use self::state::StateStore;

/// One host capability: a contract interface the host implements, the part
/// of a plugin's grants that opens it, and the state one run of the plugin
/// holds (Spin's "factors" are the model).
pub trait Capability {
    /// Its interface in the contract, e.g. `http`.
    const INTERFACE: &'static str;
    /// What it lets a plugin do, for `credbroker plugin inspect`.
    const WHAT: &'static str;
    /// What the operator grants for it to work, for `credbroker plugin inspect`.
    const GRANT: &'static str;
    /// Its checked grants, shared by every run of one plugin.
    type Policy: Send + Sync + 'static;
    /// What one run holds.
    type State: Send + 'static;

    /// Take this capability's keys from `grants` and check them.
    ///
    /// # Errors
    ///
    /// [`GrantError`] for a grant that makes no sense, at load time.
    fn configure(grants: &mut GrantTable, plugin: &PluginSetup) -> Result<Self::Policy, GrantError>;

    /// The state of one run.
    fn prepare(policy: &Arc<Self::Policy>) -> Self::State;

    /// Host resources (connections, listeners) the plugin holds in `state`:
    /// a snapshot of an instance holding any would hand every copy a dangling
    /// handle.
    fn open_resources(_state: &Self::State) -> usize {
        0
    }

    /// Add its host functions to `linker`; `view` finds its state in a store.
    ///
    /// # Errors
    ///
    /// When wasmtime refuses a definition (a bug).
    fn link(
        linker: &mut Linker<HostState>,
        view: fn(&mut HostState) -> CapView<'_, Self::State>,
    ) -> wasmtime::Result<()>;
}

/// What a plugin is configured with besides its grants: the other inputs of
/// [`Capability::configure`].
pub struct PluginSetup {
    /// Its resolved settings (the `config` capability).
    pub settings: Arc<ResolvedSettings>,
    /// Where prompts go (the `prompt` capability).
    pub terminal: Arc<dyn Terminal>,
    /// Its key-value store (the `state` capability).
    pub state: StateStore,
    /// The TLS roots its grants select (`ca-file`), shared by `http` and `ldap`.
    pub tls: Arc<tls::TlsPolicy>,
}

/// What the operator grants one plugin, as written (`[profiles.NAME.grants]`
/// or a validator's `grants`). Each key belongs to one capability, which
/// checks it ([`CapabilityPolicy::new`]); an unknown key is an error.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Grants(toml::Table);

impl Grants {
    /// Grants from a TOML table.
    pub fn from_table(table: toml::Table) -> Self {
        Self(table)
    }

    /// Append `values` to the list grant `key` (e.g. `--allow-http`).
    pub fn extend_list(&mut self, key: &str, values: impl IntoIterator<Item = String>) {
        let entry = self.0.entry(key.to_string()).or_insert_with(|| toml::Value::Array(Vec::new()));
        if let toml::Value::Array(list) = entry {
            list.extend(values.into_iter().map(toml::Value::String));
        }
    }

    /// The value of grant `key` as a `T`, when present and of that shape.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.0.get(key).cloned().and_then(|v| v.try_into().ok())
    }
}

/// A plugin's grants while the capabilities take their keys from them.
pub struct GrantTable {
    table: toml::Table,
    taken: BTreeSet<&'static str>,
}

impl GrantTable {
    fn new(grants: &Grants) -> Self {
        Self { table: grants.0.clone(), taken: BTreeSet::new() }
    }

    /// Take grant `key` as a `T` (its default when absent).
    ///
    /// # Errors
    ///
    /// [`GrantError::Malformed`] when the value is not a `T`.
    pub fn take<T: DeserializeOwned + Default>(&mut self, key: &'static str) -> Result<T, GrantError> {
        self.taken.insert(key);
        match self.table.remove(key) {
            None => Ok(T::default()),
            Some(value) => value
                .try_into()
                .map_err(|e: toml::de::Error| GrantError::Malformed { key, message: e.message().to_string() }),
        }
    }

    /// Refuse keys no capability took.
    fn finish(self) -> Result<(), GrantError> {
        match self.table.keys().next() {
            None => Ok(()),
            Some(unknown) => Err(GrantError::Unknown {
                key: crate::boundary::text::name(unknown).into_owned(),
                known: self.taken.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", "),
            }),
        }
    }
}

/// A grant the operator wrote that makes no sense. Reported when the
/// configuration is loaded, before any plugin runs.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// An `http` or `ldap` entry that is not an origin.
    #[error("grants.{grant}: `{entry}` is not an origin like {example} ({reason})")]
    BadOrigin {
        /// Which grant.
        grant: &'static str,
        /// The entry as written.
        entry: String,
        /// What an entry looks like.
        example: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A `files` entry that is not an absolute, normalised path.
    #[error("grants.files: `{0}` must be an absolute path without `.` or `..`")]
    BadFile(std::path::PathBuf),
    /// A value of the wrong shape.
    #[error("grants.{key}: {message}")]
    Malformed {
        /// The grant.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A key no capability knows.
    #[error("unknown grant `{key}`; the grants are: {known}")]
    Unknown {
        /// The key.
        key: String,
        /// Every known key.
        known: String,
    },
    /// A grant that is well-formed but cannot be honoured.
    #[error("grants.{key}: {message}")]
    Invalid {
        /// The grant.
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// Everything a plugin's store holds: WASI's context, the run's boundary,
/// and each capability's state.
pub struct HostState {
    wasi: WasiCtx,
    wasi_table: ResourceTable,
    /// Memory, table and instance limits (the store's resource limiter).
    pub(crate) guard: ResourceGuard,
    /// The run's host-call boundary.
    pub(crate) boundary: Boundary,
    caps: CapabilityStates,
    /// The run's copy of its granted environment, charged to its memory.
    _environment: Held,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.wasi_table }
    }
}

impl HostState {
    /// The store data of one run under `policy`.
    ///
    /// # Errors
    ///
    /// [`LimitExceeded::Memory`] when the run's memory cannot hold its
    /// granted environment.
    pub fn new(policy: &CapabilityPolicy, boundary: Boundary, guard: ResourceGuard) -> Result<Self, LimitExceeded> {
        let mut wasi_table = ResourceTable::new();
        wasi_table.set_max_capacity(wasi::MAX_WASI_RESOURCES);
        let environment = boundary.memory().hold(policy.env.bytes())?;
        Ok(Self {
            wasi: wasi::context(&boundary, policy.env.variables()),
            wasi_table,
            guard,
            caps: policy.prepare(),
            boundary,
            _environment: environment,
        })
    }

    /// The run's boundary.
    pub fn boundary(&self) -> &Boundary {
        &self.boundary
    }

    /// The table this run filled, read only from now on: what a setup leaves
    /// to the reviews started from its snapshot (see [`table`]).
    pub(crate) fn freeze_table(&mut self) -> Arc<table::Entries> {
        self.caps.table.freeze()
    }

    /// Start a review from the table its setup filled.
    pub(crate) fn use_frozen_table(&mut self, entries: Arc<table::Entries>) {
        self.caps.table = table::RunTable::frozen(entries);
    }

    /// Host resources the plugin holds right now (WASI streams and pollables,
    /// connections, listeners).
    pub fn open_resources(&self) -> usize {
        usize::from(!self.wasi_table.is_empty()) + self.caps.open_resources()
    }
}

/// A host capability, described (`credbroker plugin inspect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityInfo {
    /// The contract interface.
    pub interface: &'static str,
    /// What it lets the plugin do.
    pub what: &'static str,
    /// What the operator grants for it to work.
    pub grant: &'static str,
}

/// A capability in the list below: where its state sits in a store.
pub(crate) trait Registered: Capability {
    /// Its view of the run in `state`.
    fn view(state: &mut HostState) -> CapView<'_, Self::State>;
}

/// Registers the capabilities: the policy and state structs holding one of
/// each, and the loops that configure, prepare and link them all.
macro_rules! capabilities {
    ($($field:ident: $cap:ty),* $(,)?) => {
        /// Every capability's checked grants for one plugin, shared by all its runs.
        pub struct CapabilityPolicy {
            $(pub(crate) $field: Arc<<$cap as Capability>::Policy>,)*
        }

        /// Every capability's state for one run.
        struct CapabilityStates {
            $($field: <$cap as Capability>::State,)*
        }

        impl CapabilityPolicy {
            /// Check `grants` (every key taken by one capability) for a
            /// plugin configured as `plugin`.
            ///
            /// # Errors
            ///
            /// The first grant that is malformed or unknown.
            pub fn new(grants: &Grants, plugin: PluginSetup) -> Result<Self, GrantError> {
                let mut table = GrantTable::new(grants);
                let plugin = PluginSetup { tls: Arc::new(tls::TlsPolicy::configure(&mut table)?), ..plugin };
                $(let $field = Arc::new(<$cap as Capability>::configure(&mut table, &plugin)?);)*
                table.finish()?;
                Ok(Self { $($field,)* })
            }

            /// Values the grants hand the plugin that are secrets of every
            /// run (the granted environment).
            pub fn secrets(&self) -> impl Iterator<Item = &str> {
                self.env.values()
            }

            fn prepare(&self) -> CapabilityStates {
                CapabilityStates { $($field: <$cap as Capability>::prepare(&self.$field),)* }
            }
        }

        impl CapabilityStates {
            fn open_resources(&self) -> usize {
                0 $(+ <$cap as Capability>::open_resources(&self.$field))*
            }
        }

        $(impl Registered for $cap {
            fn view(state: &mut HostState) -> CapView<'_, Self::State> {
                CapView { state: &mut state.caps.$field, boundary: &mut state.boundary }
            }
        })*

        /// Add every capability (and WASI) to `linker`.
        ///
        /// # Errors
        ///
        /// When wasmtime refuses a definition (a bug).
        pub fn link_all(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
            wasi::link(linker)?;
            $(<$cap as Capability>::link(linker, <$cap as Registered>::view)?;)*
            Ok(())
        }

        /// Every capability a plugin may import.
        pub const ALL: &[CapabilityInfo] = &[
            $(CapabilityInfo {
                interface: <$cap as Capability>::INTERFACE,
                what: <$cap as Capability>::WHAT,
                grant: <$cap as Capability>::GRANT,
            },)*
        ];
    };
}

capabilities! {
    config: config::Config,
    log: log::Log,
    prompt: prompt::Prompt,
    http: http::Http,
    files: files::Files,
    ldap: ldap::Ldap,
    state: state::State,
    loopback: loopback::Loopback,
    crypto: crypto::Crypto,
    env: env::Env,
    credential_process: credential_process::CredentialProcess,
    table: table::Table,
}

/// Runs of single capabilities in-process, for their tests: a store's data
/// built from grants and limits, and each capability's view of it.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::boundary::memory::MemoryAccount;
    use crate::boundary::meter::CpuMeter;
    use crate::boundary::output::PluginOutput;
    use crate::boundary::redact::Redactor;
    use crate::limits::Limits;

    /// How to build a [`Run`].
    pub struct RunBuilder {
        grants: String,
        limits: Limits,
        settings: ResolvedSettings,
        terminal: Arc<dyn Terminal>,
        state: StateStore,
        interactive: bool,
    }

    impl RunBuilder {
        /// Grants, as the TOML of a `grants` table.
        pub fn grants(mut self, toml: &str) -> Self {
            self.grants = toml.to_string();
            self
        }

        /// Change the default limits.
        pub fn limits(mut self, change: impl FnOnce(&mut Limits)) -> Self {
            change(&mut self.limits);
            self
        }

        /// The plugin's settings.
        pub fn settings(mut self, settings: ResolvedSettings) -> Self {
            self.settings = settings;
            self
        }

        /// The terminal prompts go to.
        pub fn terminal(mut self, terminal: Arc<dyn Terminal>) -> Self {
            self.terminal = terminal;
            self
        }

        /// The plugin's store.
        pub fn state(mut self, state: StateStore) -> Self {
            self.state = state;
            self
        }

        /// Whether the run is interactive.
        pub fn interactive(mut self, interactive: bool) -> Self {
            self.interactive = interactive;
            self
        }

        /// The run.
        ///
        /// # Panics
        ///
        /// When the grants do not parse or are refused.
        pub fn build(self) -> Run {
            let grants = Grants(toml::from_str(&self.grants).expect("grants parse"));
            let settings = Arc::new(self.settings);
            let mut redactor = Redactor::new();
            for secret in settings.secrets() {
                redactor.add(secret).expect("few secrets");
            }
            let policy = CapabilityPolicy::new(
                &grants,
                PluginSetup {
                    settings,
                    terminal: self.terminal,
                    state: self.state,
                    tls: Arc::new(tls::TlsPolicy::default()),
                },
            )
            .expect("grants accepted");
            for secret in policy.secrets() {
                redactor.add(secret).expect("few secrets");
            }
            let memory = MemoryAccount::new(&self.limits);
            let meter = CpuMeter::new(self.limits.cpu_time());
            let output =
                PluginOutput::new("test-plugin".into(), self.limits.log_bytes as usize, redactor, memory.clone());
            let boundary = Boundary::new(
                "test-plugin".into(),
                self.limits.clone(),
                self.interactive,
                output,
                memory.clone(),
                meter,
            );
            let guard = ResourceGuard::new(&self.limits, memory.clone());
            Run { host: HostState::new(&policy, boundary, guard).expect("memory for the environment"), memory }
        }
    }

    /// One run's store data.
    pub struct Run {
        /// The store data.
        pub host: HostState,
        /// Its memory account.
        pub memory: MemoryAccount,
    }

    impl Run {
        /// A run with default limits and no grants.
        pub fn builder() -> RunBuilder {
            RunBuilder {
                grants: String::new(),
                limits: Limits::default(),
                settings: ResolvedSettings::default(),
                terminal: Arc::new(NoTerminal),
                state: StateStore::memory(),
                interactive: false,
            }
        }

        /// Capability `C`'s view of the run.
        pub fn view<C: Registered>(&mut self) -> CapView<'_, C::State> {
            C::view(&mut self.host)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> PluginSetup {
        PluginSetup {
            settings: Arc::default(),
            terminal: Arc::new(NoTerminal),
            state: StateStore::memory(),
            tls: Arc::new(tls::TlsPolicy::default()),
        }
    }

    fn grants(text: &str) -> Grants {
        Grants(toml::from_str(text).unwrap())
    }

    #[test]
    fn every_grant_key_belongs_to_a_capability() {
        // An absolute path on every platform.
        let file = std::env::temp_dir().join("a");
        let both = format!("http = [\"https://x\"]\nfiles = [{:?}]\n", file.display().to_string());
        assert!(CapabilityPolicy::new(&grants(&both), setup()).is_ok());
        let unknown = CapabilityPolicy::new(&grants("htp = [\"https://x\"]\n"), setup()).err().unwrap().to_string();
        assert!(unknown.starts_with("unknown grant `htp`; the grants are: "), "{unknown}");
        assert!(unknown.contains("http") && unknown.contains("redirect-listener"), "{unknown}");
        let shape = CapabilityPolicy::new(&grants("http = \"https://x\"\n"), setup()).err().unwrap().to_string();
        assert!(shape.starts_with("grants.http: invalid type: string"), "{shape}");
    }
}
