//! The one path from a plugin reference to a verified, prepared plugin, used
//! by `credbroker get`, `credbroker serve` and `credbroker doctor` alike:
//!
//! 1. **locate**: a bundled or installed name, a file path, or an OCI
//!    reference (the first use pulls it into the store; later uses read the
//!    store and never touch the network);
//! 2. **pin**: the profile's or validator's `sha256`;
//! 3. **trust**: the `[plugins]` policy (file signatures, registries and
//!    cosign signatures), checked on every run, cache hits included;
//! 4. **settings**: `env:`/`file:` values resolved;
//! 5. **sandbox**: the grants checked and the sandbox built;
//! 6. **load**: compiled (or loaded precompiled) and checked against its world.
//!
//! Steps 1–4 ([`PluginSources::verify`]) read no component: `get` computes
//! its credential cache key from them and answers a cache hit without
//! starting the runtime. Steps 5 and 6 are [`Verified::sandbox`] and
//! [`Verified::load`].

use std::path::PathBuf;
use std::sync::Arc;

use super::reference::{BadReference, OciReference, is_oci};
use super::registry::{self, RegistryError};
use super::store::{PluginStore, StoreError, StoredRef};
use super::{PluginError, PluginRef};
use crate::capabilities::{GrantError, Grants, StateStore, Terminal};
use crate::config::PluginSpec;
use crate::limits::Limits;
use crate::runtime::{LoadError, LoadedPlugin, Runtime, Sandbox, SandboxSpec, World};
use crate::settings::{ResolvedSettings, SettingsError};
use crate::signing::{SignatureError, Trust, TrustPolicy};

/// Where plugins come from: the installed plugin directories and the store of pulled ones.
#[derive(Debug, Clone)]
pub struct PluginSources {
    /// Directories of installed plugins (`NAME.wasm`).
    pub plugin_dirs: Vec<PathBuf>,
    /// Plugins pulled from registries.
    pub store: PluginStore,
}

/// Why a plugin could not be prepared; each variant is one step of the path.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Locating: no such plugin, an unreadable file, a pin that does not match.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Locating: a malformed `oci://` reference.
    #[error(transparent)]
    Reference(#[from] BadReference),
    /// Locating: pulling from the registry failed.
    #[error("cannot pull {reference}: {error}")]
    Registry {
        /// The reference.
        reference: String,
        /// Why.
        error: RegistryError,
    },
    /// Locating: the plugin store is unusable or was altered.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Trust: the signature policy refuses it.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// Settings: one cannot be resolved.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Sandbox: a grant is malformed.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// Load: it does not compile or implement its world.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// A plugin that passed steps 1–4: located, pinned, trusted, its settings resolved.
pub struct Verified {
    /// The plugin.
    pub plugin: PluginRef,
    /// Why it may run.
    pub trust: Trust,
    /// Its resolved settings.
    pub settings: ResolvedSettings,
    grants: Grants,
    limits: Limits,
}

/// What re-resolving a tag found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated {
    /// The reference.
    pub reference: String,
    /// The manifest digest before (none when it was not in the store).
    pub before: Option<String>,
    /// The manifest digest now.
    pub after: String,
}

impl PluginSources {
    /// Locate `spec` (step 1): an OCI reference from the store, pulled on
    /// first use (refused before anything is stored when `policy` refuses
    /// it); else a file, an installed or a bundled plugin.
    ///
    /// # Errors
    ///
    /// [`PrepareError`] from locating, or from the trust check of a first pull.
    pub fn locate(&self, spec: &str, policy: &TrustPolicy) -> Result<PluginRef, PrepareError> {
        if !is_oci(spec) {
            return Ok(PluginRef::locate(spec, &self.plugin_dirs)?);
        }
        let reference = OciReference::parse(spec)?;
        policy.registry(&reference)?;
        if let Some(record) = self.store.lookup(&reference)? {
            return Ok(PluginRef::stored(&reference, record, &self.store));
        }
        self.pull(&reference, policy)
    }

    /// Pull `reference` from its registry, check it against `policy` and
    /// keep it in the store; the plugin as stored.
    ///
    /// # Errors
    ///
    /// [`PrepareError::Registry`], [`PrepareError::Signature`], [`PrepareError::Store`].
    pub fn pull(&self, reference: &OciReference, policy: &TrustPolicy) -> Result<PluginRef, PrepareError> {
        policy.registry(reference)?;
        let pulled = registry::pull(reference, &policy.connection(reference))
            .map_err(|error| PrepareError::Registry { reference: reference.to_string(), error })?;
        let record = StoredRef {
            reference: reference.to_string(),
            manifest_digest: pulled.manifest_digest,
            manifest: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &pulled.manifest),
            wasm_digest: pulled.wasm_digest,
            signatures: pulled.signatures,
            resolved_at: now_unix(),
        };
        let plugin = PluginRef::stored(reference, record.clone(), &self.store);
        // Nothing the policy refuses lands in the store.
        policy.check(&plugin)?;
        self.store.put(reference, &record, &pulled.wasm)?;
        tracing::info!("pulled {reference} ({}, component sha256 {})", record.manifest_digest, record.sha256());
        Ok(plugin)
    }

    /// Re-resolve `reference`'s tag (`credbroker plugin update`, `serve`'s
    /// interval): a new digest is pulled, verified and stored; a digest
    /// reference never changes.
    ///
    /// # Errors
    ///
    /// As for [`PluginSources::pull`]; [`RegistryError::is_unreachable`]
    /// tells a registry that cannot be reached from one that refused.
    pub fn update(&self, reference: &OciReference, policy: &TrustPolicy) -> Result<Updated, PrepareError> {
        let before = self.store.lookup(reference)?;
        if reference.digest.is_some()
            && let Some(before) = &before
        {
            // A pinned digest is what it is: a moved tag cannot change it.
            return Ok(Updated {
                reference: reference.to_string(),
                before: Some(before.manifest_digest.clone()),
                after: before.manifest_digest.clone(),
            });
        }
        policy.registry(reference)?;
        let connection = policy.connection(reference);
        let digest = registry::resolve(reference, &connection)
            .map_err(|error| PrepareError::Registry { reference: reference.to_string(), error })?;
        if let Some(before) = &before
            && before.manifest_digest == digest
        {
            // Same manifest: only its signatures may have changed.
            let signatures = registry::block_on(async {
                registry::Registry::connect(reference, &connection)?.signatures(reference, &digest).await
            })
            .map_err(|error| PrepareError::Registry { reference: reference.to_string(), error })?;
            if signatures != before.signatures {
                let record = StoredRef { signatures, resolved_at: now_unix(), ..before.clone() };
                let plugin = PluginRef::stored(reference, record.clone(), &self.store);
                policy.check(&plugin)?;
                let wasm = plugin
                    .wasm()
                    .map_err(|e| StoreError::Io { path: self.store.dir().to_path_buf(), error: e.to_string() })?;
                self.store.put(reference, &record, &wasm)?;
            }
            return Ok(Updated { reference: reference.to_string(), before: Some(digest.clone()), after: digest });
        }
        let plugin = self.pull(reference, policy)?;
        let after = match &plugin.origin {
            super::PluginOrigin::Oci { record, .. } => record.manifest_digest.clone(),
            _ => digest,
        };
        Ok(Updated { reference: reference.to_string(), before: before.map(|b| b.manifest_digest), after })
    }

    /// Steps 1–4 for `spec` under `policy`: located, pinned, trusted,
    /// settings resolved. Reads no component.
    ///
    /// # Errors
    ///
    /// [`PrepareError`] naming the first step that failed.
    pub fn verify(&self, spec: &PluginSpec, policy: &TrustPolicy) -> Result<Verified, PrepareError> {
        let (plugin, trust) = self.trusted(spec, policy)?;
        let settings = ResolvedSettings::resolve(&spec.settings)?;
        Ok(Verified::new(plugin, trust, settings, spec))
    }

    /// Steps 1–3 for `spec` under `policy`: located, pinned, trusted (what
    /// `doctor` runs before it resolves the settings on its own, to report a
    /// broken setting and still check the rest).
    ///
    /// # Errors
    ///
    /// [`PrepareError`] naming the first step that failed.
    pub fn trusted(&self, spec: &PluginSpec, policy: &TrustPolicy) -> Result<(PluginRef, Trust), PrepareError> {
        let plugin = self.locate(&spec.plugin, policy)?;
        if let Some(pin) = &spec.sha256 {
            plugin.verify_pin(pin)?;
        }
        let trust = policy.check(&plugin)?;
        Ok((plugin, trust))
    }

    /// Every step for `spec`: a plugin ready to run as any of `worlds`, in its sandbox.
    ///
    /// # Errors
    ///
    /// [`PrepareError`] naming the first step that failed.
    pub fn prepare(
        &self,
        spec: &PluginSpec,
        policy: &TrustPolicy,
        runtime: &Runtime,
        worlds: &[World],
        terminal: Arc<dyn Terminal>,
        state: StateStore,
    ) -> Result<Prepared, PrepareError> {
        let verified = self.verify(spec, policy)?;
        let sandbox = verified.sandbox(terminal, state)?;
        let loaded = verified.load(runtime, worlds)?;
        Ok(Prepared { plugin: verified.plugin, trust: verified.trust, sandbox, loaded })
    }
}

impl Verified {
    /// A plugin that passed steps 1–3 with `settings` (step 4) for `spec`.
    pub fn new(plugin: PluginRef, trust: Trust, settings: ResolvedSettings, spec: &PluginSpec) -> Self {
        Self { plugin, trust, settings, grants: spec.grants.clone(), limits: spec.limits.clone() }
    }

    /// Step 5: check the grants and build the sandbox.
    ///
    /// # Errors
    ///
    /// [`PrepareError::Grant`].
    pub fn sandbox(&self, terminal: Arc<dyn Terminal>, state: StateStore) -> Result<Sandbox, PrepareError> {
        Ok(Sandbox::new(SandboxSpec {
            settings: self.settings.clone(),
            grants: &self.grants,
            limits: self.limits.clone(),
            terminal,
            state,
        })?)
    }

    /// Step 6: compile (or load precompiled) and check it as any of `worlds`.
    ///
    /// # Errors
    ///
    /// [`PrepareError::Load`].
    pub fn load(&self, runtime: &Runtime, worlds: &[World]) -> Result<LoadedPlugin, PrepareError> {
        Ok(runtime.load_any(&self.plugin, worlds)?)
    }

    /// Its grants.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }
}

/// A plugin through every step.
pub struct Prepared {
    /// The plugin.
    pub plugin: PluginRef,
    /// Why it may run.
    pub trust: Trust,
    /// Its sandbox.
    pub sandbox: Sandbox,
    /// Compiled, checked and pre-linked.
    pub loaded: LoadedPlugin,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
