//! `state`: a small key-value store the host keeps for a plugin between runs.
//!
//! Providers get a private file per profile and plugin (0600, in a 0700
//! directory, written atomically), so a refresh token survives from one
//! kubectl command to the next. Validators get a map in memory shared by all
//! runs of one validator, e.g. for a JWKS cache. Either way the plugin sees no
//! filesystem, and the store is bounded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use wasmtime::component::Linker;

use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::bindings::state::{Host, add_to_linker};
use crate::bindings::types::HostError;
use crate::boundary::wire::WireSize;
use crate::boundary::{CapView, ViewOf};
use crate::fsutil;

/// The `state` capability.
pub struct State;

impl Capability for State {
    const INTERFACE: &'static str = "state";
    const WHAT: &'static str = "keep small private state between runs";
    const GRANT: &'static str = "always granted";
    type Policy = StateStore;
    type State = PluginState;

    fn configure(_: &mut GrantTable, plugin: &PluginSetup) -> Result<StateStore, GrantError> {
        Ok(plugin.state.clone())
    }

    fn prepare(policy: &Arc<StateStore>) -> PluginState {
        PluginState::new(StateStore::clone(policy))
    }

    fn link(
        linker: &mut Linker<HostState>,
        view: fn(&mut HostState) -> CapView<'_, Self::State>,
    ) -> wasmtime::Result<()> {
        add_to_linker::<HostState, ViewOf<Self::State>>(linker, view)
    }
}

/// Largest state file read: the entries base64-encoded in JSON.
const MAX_FILE: u64 = (STATE_LIMIT as u64) * 2 + 64 * 1024;

/// Most bytes (keys and values) one store may hold.
pub const STATE_LIMIT: usize = 256 * 1024;
/// Longest key.
const MAX_KEY: usize = 256;

type Entries = BTreeMap<String, Vec<u8>>;

/// Where a plugin's state lives.
#[derive(Debug, Clone)]
pub enum StateStore {
    /// A private file, loaded on first use.
    File(PathBuf),
    /// Memory shared by the runs of one validator.
    Memory(Arc<Mutex<Entries>>),
}

impl StateStore {
    /// A fresh in-memory store.
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// The store file for `profile` using `plugin`, under `dir`.
    pub fn file_for(dir: &std::path::Path, profile: &str, plugin: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, format!("{profile}\0{plugin}").as_bytes());
        let safe: String = profile
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .take(64)
            .collect();
        Self::File(dir.join(format!("{safe}-{}.json", hex::encode(&digest.as_ref()[..6]))))
    }
}

fn size(entries: &Entries) -> usize {
    entries.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// The state of one run: the store, loaded lazily.
#[derive(Debug)]
pub struct PluginState {
    store: StateStore,
    loaded: Option<Entries>,
}

impl PluginState {
    /// State backed by `store`.
    pub fn new(store: StateStore) -> Self {
        Self { store, loaded: None }
    }

    fn file_entries(path: &std::path::Path) -> Entries {
        // A FIFO or a device put in its place must not hang or flood the run.
        let text = match fsutil::read_bounded(path, MAX_FILE) {
            Ok(text) => text,
            Err(e) if e.is_not_found() => return Entries::new(),
            Err(e) => {
                tracing::warn!("ignoring unusable plugin state: {e}");
                return Entries::new();
            }
        };
        let parsed: Result<BTreeMap<String, String>, _> = serde_json::from_slice(&text);
        let decoded = parsed.ok().and_then(|map| {
            map.into_iter()
                .map(|(k, v)| base64::engine::general_purpose::STANDARD.decode(v).ok().map(|v| (k, v)))
                .collect::<Option<Entries>>()
        });
        decoded.unwrap_or_else(|| {
            tracing::warn!("ignoring unreadable plugin state `{}`", path.display());
            Entries::new()
        })
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut Entries) -> R) -> R {
        match &self.store {
            StateStore::Memory(shared) => f(&mut shared.lock().unwrap_or_else(|e| e.into_inner())),
            StateStore::File(path) => {
                let path = path.clone();
                f(self.loaded.get_or_insert_with(|| Self::file_entries(&path)))
            }
        }
    }

    fn persist(&mut self) -> Result<(), HostError> {
        let StateStore::File(path) = &self.store else { return Ok(()) };
        let entries = self.loaded.as_ref().map(|entries| {
            entries
                .iter()
                .map(|(k, v)| (k.clone(), base64::engine::general_purpose::STANDARD.encode(v)))
                .collect::<BTreeMap<_, _>>()
        });
        let json = serde_json::to_vec(&entries.unwrap_or_default()).unwrap_or_default();
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
            return Err(HostError::Invalid("bad state path".into()));
        };
        fsutil::ensure_private_dir(dir).map_err(|e| HostError::Unreachable(e.to_string()))?;
        fsutil::write_private_atomic(dir, name, &json)
            .map_err(|e| HostError::Unreachable(format!("cannot save plugin state: {e}")))
    }
}

fn check_key(key: &str) -> Result<(), HostError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(HostError::Invalid(format!("state keys must be 1 to {MAX_KEY} bytes")));
    }
    Ok(())
}

impl Host for CapView<'_, PluginState> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.call_or_trap("state.get", key.wire_size(), async |state, _| {
            Ok(state.with(|entries| entries.get(&key).cloned()))
        })
        .await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), HostError>> {
        self.call("state.set", key.wire_size() + value.wire_size(), async |state, _| {
            if let Err(e) = check_key(&key) {
                return Ok(Err(e));
            }
            let stored = state.with(|entries| {
                let old = entries.get(&key).map_or(0, |v| key.len() + v.len());
                if size(entries) - old + key.len() + value.len() > STATE_LIMIT {
                    return Err(HostError::Invalid(format!("plugin state is limited to {STATE_LIMIT} bytes")));
                }
                entries.insert(key, value);
                Ok(())
            });
            Ok(stored.and_then(|()| state.persist()))
        })
        .await
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), HostError>> {
        self.call("state.delete", key.wire_size(), async |state, _| {
            let removed = state.with(|entries| entries.remove(&key).is_some());
            Ok(if removed { state.persist() } else { Ok(()) })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::Run;

    #[tokio::test]
    async fn values_are_bounded_by_the_store_and_the_call_limit() {
        let mut run = Run::builder().limits(|l| l.max_call_bytes = 64 * 1024).build();
        let mut view = run.view::<State>();
        view.set("k".into(), b"v".to_vec()).await.unwrap().unwrap();
        assert_eq!(view.get("k".into()).await.unwrap().as_deref(), Some(&b"v"[..]));
        let over = view.set("big".into(), vec![0; 100 * 1024]).await.unwrap().unwrap_err();
        assert!(matches!(over, HostError::Invalid(m) if m.contains("`state.set`")));
        assert!(view.set(String::new(), Vec::new()).await.unwrap().is_err());
        view.delete("k".into()).await.unwrap().unwrap();
        assert_eq!(view.get("k".into()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_fifo_in_place_of_the_state_file_is_ignored_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::file_for(dir.path(), "corp", "oidc");
        let StateStore::File(path) = &store else { unreachable!() };
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut run = Run::builder().state(store).build();
        let started = std::time::Instant::now();
        assert_eq!(run.view::<State>().get("refresh".into()).await.unwrap(), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
