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

use super::PluginContext;
use crate::fsutil;
use crate::runtime::bindings::state::Host;
use crate::runtime::bindings::types::HostError;

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
        let Ok(text) = std::fs::read(path) else { return Entries::new() };
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

impl Host for PluginContext {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.state.with(|entries| entries.get(&key).cloned()))
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), HostError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        let stored = self.state.with(|entries| {
            let old = entries.get(&key).map_or(0, |v| key.len() + v.len());
            if size(entries) - old + key.len() + value.len() > STATE_LIMIT {
                return Err(HostError::Invalid(format!("plugin state is limited to {STATE_LIMIT} bytes")));
            }
            entries.insert(key, value);
            Ok(())
        });
        Ok(stored.and_then(|()| self.state.persist()))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), HostError>> {
        let removed = self.state.with(|entries| entries.remove(&key).is_some());
        Ok(if removed { self.state.persist() } else { Ok(()) })
    }
}
