//! The credential cache of `credbroker get`.
//!
//! kubectl runs the exec plugin on every command, so a valid credential is
//! reused from here without starting the WebAssembly runtime at all. Entries
//! live in the OS keyring (storage = "keyring") or in a private directory
//! (0700), one private file (0600) per key, written atomically. On Linux an
//! entry kept in the keyring is also kept in the kernel's user keyring until
//! it expires ([`KernelCache`]): a hit from there is a few system calls,
//! where the Secret Service is three round trips over D-Bus. Either way a
//! lock file per key in that directory, held across the provider run, makes
//! many kubectl processes started at once log in only once; the lock is an
//! `flock`, which the kernel releases when its holder dies, so a killed
//! process never blocks the next one.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::credential::ExecCredentialStatus;
use crate::fsutil::{self, FileLock, LockError};
use crate::storage::keyring::kernel::KernelCache;
use crate::storage::{ItemId, KeyringError, KeyringHandle};

/// Largest cache entry read; anything bigger is not ours.
const MAX_ENTRY: u64 = 4 * 1024 * 1024;

/// A cached credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedCredential {
    /// Format version of the entry.
    pub version: u32,
    /// When the credential stops being valid (Unix seconds).
    pub expires_at: i64,
    /// Whether `expires_at` came from the provider (and goes to kubectl) or
    /// from the operator's cache TTL (and does not).
    pub provider_expiry: bool,
    /// The credential as kubectl receives it.
    pub status: ExecCredentialStatus,
}

const ENTRY_VERSION: u32 = 1;

/// The credential cache: its directory (locks, and entries when they are
/// files) and where entries live.
#[derive(Debug, Clone)]
pub struct TokenCache {
    dir: PathBuf,
    keyring: Option<KeyringHandle>,
    /// Where entries found in or written to `keyring` are copied; only with `keyring`.
    kernel: Option<KernelCache>,
}

/// A cache key: the profile it belongs to and a name unique to everything
/// that makes a credential different.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// The profile (or plugin) name the user selected.
    pub profile: String,
    /// `PROFILE.HASH`: the file name stem, and the keyring item's key.
    pub name: String,
}

impl CacheKey {
    /// Its keyring item.
    pub fn item(&self) -> ItemId {
        ItemId { kind: "credential", profile: self.profile.clone(), key: self.name.clone() }
    }
}

/// The cache cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The directory cannot be made private.
    #[error("credential cache: {0}")]
    Dir(#[from] fsutil::PrivateDirError),
    /// An entry file cannot be written or the directory listed.
    #[error("credential cache: `{}`: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The per-key lock cannot be taken (in time).
    #[error("credential cache: {0}")]
    Lock(LockError),
    /// The keyring refused to store the entry.
    #[error("credential cache: {0}")]
    Keyring(KeyringError),
}

// Not `#[from]`: the messages hold the inner ones, which as sources would be
// printed twice.
impl From<LockError> for CacheError {
    fn from(error: LockError) -> Self {
        Self::Lock(error)
    }
}

impl From<KeyringError> for CacheError {
    fn from(error: KeyringError) -> Self {
        Self::Keyring(error)
    }
}

/// The material a cache key is made of: everything that makes a credential
/// different.
#[derive(Debug, Serialize)]
pub struct KeyMaterial<'a> {
    /// The profile (or plugin) name the user selected.
    pub profile: &'a str,
    /// The plugin's sha256.
    pub plugin_sha256: &'a str,
    /// Effective settings, resolved (so a changed `env:` value is a new key).
    pub settings: Vec<(&'a str, &'a str)>,
    /// The API server, unless the operator shares credentials across clusters.
    pub server: Option<&'a str>,
}

impl TokenCache {
    /// The cache in `dir`, created private if missing and narrowed to 0700 if
    /// others could enter it; entries are in `keyring` when given, else files
    /// in `dir`.
    ///
    /// # Errors
    ///
    /// [`CacheError::Dir`] when the directory belongs to someone else or
    /// cannot be created.
    pub fn open(dir: PathBuf, keyring: Option<KeyringHandle>) -> Result<Self, CacheError> {
        fsutil::ensure_private_dir(&dir)?;
        let kernel = keyring.is_some().then(|| KernelCache::new(&dir));
        Ok(Self { dir, keyring, kernel })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key for `material`.
    pub fn key(material: &KeyMaterial<'_>) -> CacheKey {
        CacheKey { profile: material.profile.to_string(), name: Self::key_name(material) }
    }

    /// The file name stem for `material`: the profile name (for `cache clear
    /// --provider`) and a hash of everything.
    fn key_name(material: &KeyMaterial<'_>) -> String {
        let json = serde_json::to_vec(material).unwrap_or_default();
        let digest = hex::encode(&Sha256::digest(&json)[..16]);
        let profile: String = material
            .profile
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .take(64)
            .collect();
        format!("{profile}.{digest}")
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The cached credential for `key` if it is still valid `margin` seconds
    /// from `now`. Missing, unreadable, foreign, corrupt or expiring entries are
    /// all a miss. With the keyring, an entry found there is copied into the
    /// kernel keyring; the copy itself is read by [`TokenCache::read_kernel`],
    /// before the keyring is connected to, not again here.
    pub fn read(&self, key: &CacheKey, now: i64, margin: u64) -> Option<CachedCredential> {
        let (text, origin) = match &self.keyring {
            Some(keyring) => match keyring.block_on(keyring.keyring().get(&key.item())) {
                Ok(Some(secret)) if secret.len() as u64 <= MAX_ENTRY => (secret, "keyring item".to_string()),
                Ok(_) => return None,
                Err(e) => {
                    tracing::warn!("credential cache: {e}; logging in anew");
                    return None;
                }
            },
            None => {
                let path = self.entry_path(&key.name);
                (Self::read_file(&path)?, format!("`{}`", path.display()))
            }
        };
        let entry = valid_entry(&text, &origin, now, margin)?;
        if let Some(kernel) = &self.kernel {
            keep_in_kernel(kernel, key, &text, entry.expires_at, now, margin);
        }
        Some(entry)
    }

    /// [`TokenCache::read`] from the kernel's copy of the keyring's entries of
    /// the cache in `dir` alone: a hit without connecting to the keyring.
    /// Always a miss off Linux, or where the kernel keeps no keys for us.
    pub fn read_kernel(dir: &Path, key: &CacheKey, now: i64, margin: u64) -> Option<CachedCredential> {
        read_kernel(&KernelCache::new(dir), key, now, margin)
    }

    fn read_file(path: &Path) -> Option<Vec<u8>> {
        let mut file = fsutil::open_nofollow(OpenOptions::new().read(true), path).ok()?;
        let meta = file.metadata().ok()?;
        if !fsutil::is_private_file(&meta) || meta.len() > MAX_ENTRY {
            tracing::warn!("ignoring cache entry `{}`: not a private file of this user", path.display());
            return None;
        }
        let mut text = Vec::new();
        file.read_to_end(&mut text).ok()?;
        Some(text)
    }

    /// Store `entry` under `key`; `now` and `margin` as for
    /// [`TokenCache::read`] (the kernel keeps no copy of an entry that would
    /// never be read back).
    ///
    /// # Errors
    ///
    /// [`CacheError::Io`] when the file cannot be written,
    /// [`CacheError::Keyring`] when the keyring refuses the item.
    pub fn write(&self, key: &CacheKey, entry: &CachedCredential, now: i64, margin: u64) -> Result<(), CacheError> {
        let json = serde_json::to_vec(entry).unwrap_or_default();
        if let Some(keyring) = &self.keyring {
            let label = format!("credbroker: cached credential of profile {}", key.profile);
            keyring.block_on(keyring.keyring().put(&key.item(), &label, &json))?;
            if let Some(kernel) = &self.kernel {
                keep_in_kernel(kernel, key, &json, entry.expires_at, now, margin);
            }
            return Ok(());
        }
        let name = format!("{}.json", key.name);
        fsutil::write_private_atomic(&self.dir, &name, &json)
            .map_err(|error| CacheError::Io { path: self.dir.join(name), error })
    }

    /// Take the lock for `key`, waiting at most `timeout` for another process
    /// to finish.
    ///
    /// # Errors
    ///
    /// [`CacheError::Lock`] when it cannot be taken in time.
    pub fn lock(&self, key: &CacheKey, timeout: Duration) -> Result<FileLock, CacheError> {
        Ok(FileLock::acquire(&self.dir.join(format!("{}.lock", key.name)), timeout)?)
    }

    /// Remove every entry file (or those of `profile`) and their locks;
    /// returns how many entries were removed. Keyring items and their kernel
    /// copies are removed by [`crate::exec::clear_cache`].
    ///
    /// # Errors
    ///
    /// [`CacheError::Io`] when the directory cannot be listed.
    pub fn clear(&self, profile: Option<&str>) -> Result<usize, CacheError> {
        let prefix = profile.map(|p| {
            let key =
                Self::key_name(&KeyMaterial { profile: p, plugin_sha256: "", settings: Vec::new(), server: None });
            key.split('.').next().unwrap_or_default().to_string() + "."
        });
        let entries = fs::read_dir(&self.dir).map_err(|error| CacheError::Io { path: self.dir.clone(), error })?;
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.ends_with(".json") || name.ends_with(".lock");
            let matches = prefix.as_deref().is_none_or(|p| name.starts_with(p));
            if ours && matches && fs::remove_file(entry.path()).is_ok() && name.ends_with(".json") {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// `text` as a cache entry if it is one still valid `margin` seconds from
/// `now` (`origin` names where it was read, for the warning about a corrupt one).
fn valid_entry(text: &[u8], origin: &str, now: i64, margin: u64) -> Option<CachedCredential> {
    let entry: CachedCredential = match serde_json::from_slice(text) {
        Ok(entry) => entry,
        Err(e) => {
            tracing::warn!("ignoring corrupt cache entry {origin}: {e}");
            return None;
        }
    };
    let margin = i64::try_from(margin).unwrap_or(i64::MAX);
    (entry.version == ENTRY_VERSION && entry.expires_at > now.saturating_add(margin)).then_some(entry)
}

/// The entry for `key` in `kernel`, if valid; one that is not (corrupt, or
/// expiring within `margin`) is removed, so the next run asks the keyring.
fn read_kernel(kernel: &KernelCache, key: &CacheKey, now: i64, margin: u64) -> Option<CachedCredential> {
    let item = key.item();
    let text = match kernel.get(&item) {
        Ok(text) => text?,
        Err(e) => {
            tracing::debug!("credential cache: {e}; asking the OS keyring");
            return None;
        }
    };
    let entry = valid_entry(&text, "in the kernel keyring", now, margin);
    if entry.is_none()
        && let Err(e) = kernel.delete(&item)
    {
        tracing::debug!("credential cache: {e}");
    }
    entry
}

/// Copy an entry kept in the keyring into `kernel` until it expires, unless
/// it expires within `margin` (it would never be read back). A kernel that
/// refuses (seccomp, quota, size) only means no fast path next time.
fn keep_in_kernel(kernel: &KernelCache, key: &CacheKey, text: &[u8], expires_at: i64, now: i64, margin: u64) {
    let left = u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0);
    if left <= margin {
        return;
    }
    let lifetime = Duration::from_secs(left);
    if let Err(e) = kernel.put(&key.item(), text, lifetime) {
        tracing::debug!("credential cache: {e}; the keyring alone keeps it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> CacheKey {
        CacheKey { profile: name.split('.').next().unwrap_or_default().into(), name: name.into() }
    }

    fn entry(expires_at: i64) -> CachedCredential {
        CachedCredential {
            version: ENTRY_VERSION,
            expires_at,
            provider_expiry: true,
            status: ExecCredentialStatus { token: Some("t".into()), ..Default::default() },
        }
    }

    #[test]
    fn entries_expire_with_margin() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(dir.path().join("c"), None).unwrap();
        cache.write(&key("k"), &entry(1_000), 0, 0).unwrap();
        assert!(cache.read(&key("k"), 900, 60).is_some());
        assert!(cache.read(&key("k"), 950, 60).is_none());
        assert!(cache.read(&key("other"), 0, 0).is_none());
    }

    #[test]
    fn corrupt_entries_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(dir.path().join("c"), None).unwrap();
        fs::write(cache.dir().join("k.json"), "{not json").unwrap();
        assert!(cache.read(&key("k"), 0, 0).is_none());
    }

    #[test]
    fn keys_differ_by_server_and_settings() {
        let base =
            KeyMaterial { profile: "p", plugin_sha256: "d", settings: vec![("a", "1")], server: Some("https://a") };
        let other_server =
            KeyMaterial { server: Some("https://b"), ..KeyMaterial { settings: vec![("a", "1")], ..base } };
        let base =
            KeyMaterial { profile: "p", plugin_sha256: "d", settings: vec![("a", "1")], server: Some("https://a") };
        let other_setting =
            KeyMaterial { profile: "p", plugin_sha256: "d", settings: vec![("a", "2")], server: Some("https://a") };
        let k = TokenCache::key(&base);
        assert!(k.name.starts_with("p."));
        assert_eq!(k.profile, "p");
        assert_ne!(k, TokenCache::key(&other_server));
        assert_ne!(k, TokenCache::key(&other_setting));
    }

    #[test]
    fn locks_exclude_and_release() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(dir.path().join("c"), None).unwrap();
        let held = cache.lock(&key("k"), Duration::from_secs(1)).unwrap();
        assert!(matches!(
            cache.lock(&key("k"), Duration::from_millis(50)),
            Err(CacheError::Lock(LockError::Timeout { .. }))
        ));
        drop(held);
        assert!(cache.lock(&key("k"), Duration::from_millis(50)).is_ok());
    }

    /// The kernel's copy (Linux) is served while valid; a copy that is
    /// corrupt or expiring within the margin is a miss and is removed.
    #[cfg(target_os = "linux")]
    #[test]
    fn kernel_copies_are_served_while_valid_and_removed_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = KernelCache::new(dir.path());
        let (valid, expiring, corrupt) = (key("valid.1"), key("expiring.1"), key("corrupt.1"));
        let hour = Duration::from_secs(3600);
        let json = |e: &CachedCredential| serde_json::to_vec(e).unwrap();
        if kernel.put(&valid.item(), &json(&entry(10_000)), hour).is_err() {
            eprintln!("no kernel keyring here (keyctl blocked?): skipped");
            return;
        }
        kernel.put(&expiring.item(), &json(&entry(1_030)), hour).unwrap();
        kernel.put(&corrupt.item(), b"{not json", hour).unwrap();

        let hit = TokenCache::read_kernel(dir.path(), &valid, 1_000, 60);
        assert_eq!(hit.and_then(|e| e.status.token), Some("t".to_string()));
        assert!(TokenCache::read_kernel(dir.path(), &expiring, 1_000, 60).is_none());
        assert!(TokenCache::read_kernel(dir.path(), &corrupt, 1_000, 60).is_none());
        assert_eq!(kernel.get(&expiring.item()).unwrap(), None, "removed, so the next run asks the keyring");
        assert_eq!(kernel.get(&corrupt.item()).unwrap(), None);
        // Another cache directory's copies are not this one's.
        assert!(TokenCache::read_kernel(&dir.path().join("other"), &valid, 1_000, 60).is_none());
        assert_eq!(kernel.delete_all(None).unwrap(), 1);
    }

    #[test]
    fn clear_by_profile() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(dir.path().join("c"), None).unwrap();
        cache.write(&key("a.1"), &entry(1), 0, 0).unwrap();
        cache.write(&key("b.2"), &entry(1), 0, 0).unwrap();
        assert_eq!(cache.clear(Some("a")).unwrap(), 1);
        assert!(cache.dir().join("b.2.json").exists());
        assert_eq!(cache.clear(None).unwrap(), 1);
    }
}
