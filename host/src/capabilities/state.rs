//! `state`: a small key-value store the host keeps for a plugin between runs.
//!
//! Providers get a store per profile and plugin, so a refresh token survives
//! from one kubectl command to the next: an item in the OS keyring
//! (storage = "keyring") or a private file (0600, in a 0700 directory,
//! written atomically). Validators get a map in memory shared by all runs of
//! one validator, e.g. for a JWKS cache. Either way the plugin sees no
//! filesystem, and the store is bounded.
//!
//! A provider's store is locked from the run's first state call to its end
//! (an `flock` on a lock file beside the state file), and read only once the
//! lock is held. A refresh token is read, spent at the identity provider and
//! replaced by the rotated one within that window, so two runs of one profile
//! (two clusters, or `--no-cache`, which take different or no cache locks)
//! never both spend the same refresh token or overwrite each other's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use wasmtime::component::Linker;

use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::bindings::state::{Host, add_to_linker};
use crate::bindings::types::HostError;
use crate::boundary::wire::WireSize;
use crate::boundary::{Boundary, CapView, ViewOf};
use crate::fsutil::{self, FileLock};
use crate::storage::{ItemId, Keyring};

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
    /// A private file, loaded on first use under its lock.
    File(StateFile),
    /// An item in the OS keyring, loaded on first use under the lock of its
    /// file, which is read (and then removed) when the keyring has no item
    /// yet: state kept in files before moves into the keyring.
    Keyring {
        /// The keyring.
        keyring: Keyring,
        /// The item.
        item: ItemId,
        /// The file the state would be in, and its lock.
        file: StateFile,
    },
    /// Memory shared by the runs of one validator.
    Memory(Arc<Mutex<Entries>>),
}

/// A provider's state file and its lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFile {
    /// `DIR/NAME.json`.
    pub path: PathBuf,
    /// `DIR/NAME.lock`.
    pub lock: PathBuf,
}

impl StateFile {
    /// The state file for `profile` using `plugin`, under `dir`.
    pub fn of(dir: &Path, profile: &str, plugin: &str) -> Self {
        let name = state_name(profile, plugin);
        Self { path: dir.join(format!("{name}.json")), lock: dir.join(format!("{name}.lock")) }
    }

    fn dir(&self) -> Option<&Path> {
        self.path.parent()
    }
}

/// The name of the store of `profile` using `plugin`: the profile name, made
/// safe for a file name, and a hash of both.
pub fn state_name(profile: &str, plugin: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{profile}\0{plugin}").as_bytes());
    format!("{}-{}", safe_profile(profile), hex::encode(&digest.as_ref()[..6]))
}

/// `profile` as the start of a file name: ASCII letters, digits, `-` and `_`.
pub fn safe_profile(profile: &str) -> String {
    profile.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(64).collect()
}

/// Whether `file_name` (in the state directory) is a state or lock file of
/// `profile`, with any plugin; every profile's when `profile` is `None`.
pub fn is_state_file_of(file_name: &str, profile: Option<&str>) -> bool {
    let Some(stem) = file_name.strip_suffix(".json").or_else(|| file_name.strip_suffix(".lock")) else {
        return false;
    };
    let Some((safe, hash)) = stem.rsplit_once('-') else { return false };
    hash.len() == 12
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && profile.is_none_or(|profile| safe == safe_profile(profile))
}

impl StateStore {
    /// A fresh in-memory store.
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// The store file for `profile` using `plugin`, under `dir`.
    pub fn file_for(dir: &Path, profile: &str, plugin: &str) -> Self {
        Self::File(StateFile::of(dir, profile, plugin))
    }

    /// The keyring item for `profile` using `plugin`; its lock (and the file
    /// its state moves from) under `dir`.
    pub fn keyring_for(keyring: Keyring, dir: &Path, profile: &str, plugin: &str) -> Self {
        let file = StateFile::of(dir, profile, plugin);
        let item = ItemId { kind: "state", profile: profile.to_string(), key: state_name(profile, plugin) };
        Self::Keyring { keyring, item, file }
    }
}

fn size(entries: &Entries) -> usize {
    entries.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// The state of one run: the store, loaded lazily under its lock.
#[derive(Debug)]
pub struct PluginState {
    store: StateStore,
    loaded: Option<Entries>,
    /// Held from the first state call to the end of the run.
    lock: Option<FileLock>,
    /// Why the store could not be locked: nothing is saved then.
    unusable: Option<String>,
}

impl PluginState {
    /// State backed by `store`.
    pub fn new(store: StateStore) -> Self {
        Self { store, loaded: None, lock: None, unusable: None }
    }

    fn decode(text: &[u8], origin: &dyn std::fmt::Display) -> Entries {
        let parsed: Result<BTreeMap<String, String>, _> = serde_json::from_slice(text);
        let decoded = parsed.ok().and_then(|map| {
            map.into_iter()
                .map(|(k, v)| base64::engine::general_purpose::STANDARD.decode(v).ok().map(|v| (k, v)))
                .collect::<Option<Entries>>()
        });
        decoded.unwrap_or_else(|| {
            tracing::warn!("ignoring unreadable plugin state {origin}");
            Entries::new()
        })
    }

    fn encode(entries: &Entries) -> Vec<u8> {
        let map: BTreeMap<_, _> =
            entries.iter().map(|(k, v)| (k.clone(), base64::engine::general_purpose::STANDARD.encode(v))).collect();
        serde_json::to_vec(&map).unwrap_or_default()
    }

    /// The entries of `file`, if there is one.
    fn file_entries(file: &StateFile) -> Option<Entries> {
        // A FIFO or a device put in its place must not hang or flood the run.
        match fsutil::read_bounded(&file.path, MAX_FILE) {
            Ok(text) => Some(Self::decode(&text, &format_args!("`{}`", file.path.display()))),
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                tracing::warn!("ignoring unusable plugin state: {e}");
                None
            }
        }
    }

    /// Lock the store (waiting for another run of the profile to finish with
    /// it) and read it, once per run.
    async fn load(&mut self, boundary: &Boundary) -> &mut Entries {
        if self.loaded.is_none() {
            let entries = match &self.store {
                StateStore::Memory(_) => Entries::new(),
                StateStore::File(file) | StateStore::Keyring { file, .. } => {
                    let file = file.clone();
                    match Self::lock(&file, boundary).await {
                        Ok(lock) => {
                            self.lock = Some(lock);
                            self.read_locked(&file).await
                        }
                        Err(reason) => {
                            tracing::warn!("plugin state not used: {reason}");
                            self.unusable = Some(reason);
                            Entries::new()
                        }
                    }
                }
            };
            self.loaded = Some(entries);
        }
        self.loaded.get_or_insert_default()
    }

    async fn lock(file: &StateFile, boundary: &Boundary) -> Result<FileLock, String> {
        let dir = file.dir().ok_or("bad state path")?;
        fsutil::ensure_private_dir(dir).map_err(|e| e.to_string())?;
        // The run's own deadline ends a longer wait first.
        FileLock::acquire_async(&file.lock, boundary.time_left()).await.map_err(|e| e.to_string())
    }

    async fn read_locked(&self, file: &StateFile) -> Entries {
        match &self.store {
            StateStore::Keyring { keyring, item, .. } => match keyring.get(item).await {
                Ok(Some(secret)) if secret.len() as u64 <= MAX_FILE => Self::decode(&secret, &"in the keyring"),
                Ok(Some(_)) => {
                    tracing::warn!("ignoring oversized plugin state in the keyring");
                    Entries::new()
                }
                Ok(None) => Self::file_entries(file).unwrap_or_default(),
                Err(e) => {
                    tracing::warn!("plugin state: {e}");
                    Entries::new()
                }
            },
            _ => Self::file_entries(file).unwrap_or_default(),
        }
    }

    async fn persist(&mut self) -> Result<(), HostError> {
        if let Some(reason) = &self.unusable {
            return Err(HostError::Unreachable(format!("cannot save plugin state: {reason}")));
        }
        let json = Self::encode(self.loaded.as_ref().unwrap_or(&Entries::new()));
        match &self.store {
            StateStore::Memory(_) => Ok(()),
            StateStore::File(file) => Self::write_file(file, &json),
            StateStore::Keyring { keyring, item, file } => {
                let label = format!("credbroker: plugin state of profile {}", item.profile);
                keyring
                    .put(item, &label, &json)
                    .await
                    .map_err(|e| HostError::Unreachable(format!("cannot save plugin state: {e}")))?;
                // Moved into the keyring: the file (if any) must not keep the secret.
                match std::fs::remove_file(&file.path) {
                    Ok(()) => tracing::info!("moved plugin state from `{}` into the keyring", file.path.display()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!("cannot remove the old state file `{}`: {e}", file.path.display()),
                }
                Ok(())
            }
        }
    }

    fn write_file(file: &StateFile, json: &[u8]) -> Result<(), HostError> {
        let (Some(dir), Some(name)) = (file.dir(), file.path.file_name().and_then(|n| n.to_str())) else {
            return Err(HostError::Invalid("bad state path".into()));
        };
        fsutil::ensure_private_dir(dir).map_err(|e| HostError::Unreachable(e.to_string()))?;
        fsutil::write_private_atomic(dir, name, json)
            .map_err(|e| HostError::Unreachable(format!("cannot save plugin state: {e}")))
    }

    /// Apply `change` to the entries (shared memory for a validator).
    async fn with<R>(&mut self, boundary: &Boundary, change: impl FnOnce(&mut Entries) -> R) -> R {
        if let StateStore::Memory(shared) = &self.store {
            return change(&mut shared.lock().unwrap_or_else(|e| e.into_inner()));
        }
        change(self.load(boundary).await)
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
        self.call_or_trap("state.get", key.wire_size(), async |state, boundary| {
            Ok(state.with(boundary, |entries| entries.get(&key).cloned()).await)
        })
        .await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), HostError>> {
        self.call("state.set", key.wire_size() + value.wire_size(), async |state, boundary| {
            if let Err(e) = check_key(&key) {
                return Ok(Err(e));
            }
            let stored = state
                .with(boundary, |entries| {
                    let old = entries.get(&key).map_or(0, |v| key.len() + v.len());
                    if size(entries) - old + key.len() + value.len() > STATE_LIMIT {
                        return Err(HostError::Invalid(format!("plugin state is limited to {STATE_LIMIT} bytes")));
                    }
                    entries.insert(key, value);
                    Ok(())
                })
                .await;
            Ok(match stored {
                Ok(()) => state.persist().await,
                Err(e) => Err(e),
            })
        })
        .await
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), HostError>> {
        self.call("state.delete", key.wire_size(), async |state, boundary| {
            let removed = state.with(boundary, |entries| entries.remove(&key).is_some()).await;
            Ok(if removed { state.persist().await } else { Ok(()) })
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

    // Windows has no FIFOs in the file system.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_fifo_in_place_of_the_state_file_is_ignored_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::file_for(dir.path(), "corp", "oidc");
        let StateStore::File(file) = &store else { unreachable!() };
        let c = std::ffi::CString::new(file.path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut run = Run::builder().state(store).build();
        let started = std::time::Instant::now();
        assert_eq!(run.view::<State>().get("refresh".into()).await.unwrap(), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_second_run_of_the_profile_waits_for_the_first_and_reads_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::file_for(dir.path(), "corp", "oidc");
        let mut first = Run::builder().state(store.clone()).build();
        first.view::<State>().set("refresh".into(), b"r1".to_vec()).await.unwrap().unwrap();
        // While the first run holds the store (its refresh token is being
        // spent), the second cannot read it: it would spend the same token.
        let mut second = Run::builder().state(store.clone()).build();
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(300), second.view::<State>().get("refresh".into()))
                .await;
        assert!(early.is_err(), "the second run read the state while the first held it");
        first.view::<State>().set("refresh".into(), b"r2".to_vec()).await.unwrap().unwrap();
        drop(first);
        assert_eq!(second.view::<State>().get("refresh".into()).await.unwrap().as_deref(), Some(&b"r2"[..]));
        // Each set re-writes the store whole from what was read under the lock.
        second.view::<State>().set("other".into(), b"x".to_vec()).await.unwrap().unwrap();
        drop(second);
        let mut third = Run::builder().state(store).build();
        assert_eq!(third.view::<State>().get("refresh".into()).await.unwrap().as_deref(), Some(&b"r2"[..]));
        assert_eq!(third.view::<State>().get("other".into()).await.unwrap().as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn state_files_are_told_apart_by_profile() {
        let dir = std::path::Path::new("/s");
        let corp = StateFile::of(dir, "corp", "oidc");
        let name = corp.path.file_name().unwrap().to_str().unwrap();
        assert!(is_state_file_of(name, Some("corp")));
        assert!(is_state_file_of(name, None));
        let lock = corp.lock.file_name().unwrap().to_str().unwrap();
        assert!(is_state_file_of(lock, Some("corp")));
        // "corp-eu" starts with "corp-" but is another profile.
        let eu = StateFile::of(dir, "corp-eu", "oidc");
        assert!(!is_state_file_of(eu.path.file_name().unwrap().to_str().unwrap(), Some("corp")));
        assert!(!is_state_file_of("corp-notahash.json", Some("corp")));
        assert!(!is_state_file_of(".corp-0123456789ab.json.Xy.tmp", None));
    }
}
