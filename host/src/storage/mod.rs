//! Where `credbroker get` keeps secrets between runs: cached credentials and
//! plugin state (refresh tokens). A profile or `--storage` picks one:
//!
//! - `keyring`: the OS secret store ([`keyring`]); nothing secret is written
//!   to disk (lock files and this module's notice hold no secret);
//! - `file`: private files (0600 in 0700 directories);
//! - `none`: nothing is kept: every run logs in;
//! - `auto` (the default): the keyring when one answers, else the files, with
//!   a notice said once (keyrings are often missing in containers and over SSH).

pub mod keyring;

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

pub use self::keyring::{ItemId, Keyring, KeyringError, Selector};

/// The storage a profile or the command line asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// The keyring when one answers, else files (with a one-time notice).
    #[default]
    Auto,
    /// The OS keyring, or an error.
    Keyring,
    /// Private files.
    File,
    /// Nothing kept between runs.
    None,
}

impl StorageKind {
    /// Parse `auto`, `keyring`, `file` or `none`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "keyring" => Some(Self::Keyring),
            "file" => Some(Self::File),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// Its name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Keyring => "keyring",
            Self::File => "file",
            Self::None => "none",
        }
    }
}

/// A connected keyring with the async runtime that drives its connection.
///
/// The runtime is a current-thread one: whoever uses the keyring runs on it
/// (`credbroker get` runs its plugin on it too), so the connection made once
/// serves the cache read, the plugin's state and the cache write.
#[derive(Debug, Clone)]
pub struct KeyringHandle {
    keyring: Keyring,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl KeyringHandle {
    /// Connect on a new current-thread runtime; `first_read` is the item the
    /// caller reads first (the keyring may look it up while connecting).
    ///
    /// # Errors
    ///
    /// [`StorageError::Runtime`] or the keyring's error.
    pub fn connect(first_read: Option<&ItemId>) -> Result<Self, StorageError> {
        Keyring::check_bus()?;
        let runtime = Arc::new(new_runtime()?);
        let keyring = runtime.block_on(Keyring::connect(first_read))?;
        Ok(Self { keyring, runtime })
    }

    /// The keyring (use it on [`KeyringHandle::runtime`]).
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The runtime its connection lives on.
    pub fn runtime(&self) -> &Arc<tokio::runtime::Runtime> {
        &self.runtime
    }

    /// Run `work` to completion on the keyring's runtime.
    pub fn block_on<F: Future>(&self, work: F) -> F::Output {
        self.runtime.block_on(work)
    }
}

/// The runtime of one command: current-thread, with timers and I/O.
///
/// # Errors
///
/// [`StorageError::Runtime`] when it cannot start.
pub fn new_runtime() -> Result<tokio::runtime::Runtime, StorageError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(StorageError::Runtime)
}

/// The storage one command uses.
#[derive(Debug, Clone)]
pub enum Storage {
    /// The OS keyring.
    Keyring(KeyringHandle),
    /// Private files.
    Files,
    /// Nothing kept.
    Nothing,
}

/// The storage asked for cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// `storage = "keyring"` and the keyring does not work.
    #[error(
        "storage = \"keyring\": {0}; use storage = \"file\" (or --storage file) to keep secrets in private files, or \"auto\" to fall back to them"
    )]
    Keyring(KeyringError),
    /// The async runtime cannot start.
    #[error("cannot start: {0}")]
    Runtime(std::io::Error),
}

// Not `#[from]`: the message holds the keyring's, which as a source would
// be printed twice.
impl From<KeyringError> for StorageError {
    fn from(error: KeyringError) -> Self {
        Self::Keyring(error)
    }
}

/// The file in the cache directory that says the fallback notice was given.
pub const FALLBACK_NOTICE_FILE: &str = "keyring-fallback-noticed";

impl Storage {
    /// Resolve `kind`: connect to the keyring if it asks for one (`first_read`:
    /// as for [`KeyringHandle::connect`]). For `auto`, a keyring that does not
    /// answer means files, and the first time that happens (remembered in
    /// `cache_dir`) a notice says so.
    ///
    /// # Errors
    ///
    /// [`StorageError::Keyring`] for `keyring` when none answers.
    pub fn open(kind: StorageKind, cache_dir: &Path, first_read: Option<&ItemId>) -> Result<Self, StorageError> {
        match kind {
            StorageKind::File => Ok(Self::Files),
            StorageKind::None => Ok(Self::Nothing),
            StorageKind::Keyring => Ok(Self::Keyring(KeyringHandle::connect(first_read)?)),
            StorageKind::Auto => match KeyringHandle::connect(first_read) {
                Ok(handle) => Ok(Self::Keyring(handle)),
                Err(StorageError::Keyring(reason)) => {
                    notice_fallback(&reason, cache_dir);
                    Ok(Self::Files)
                }
                Err(other) => Err(other),
            },
        }
    }

    /// Its name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Keyring(_) => "keyring",
            Self::Files => "file",
            Self::Nothing => "none",
        }
    }
}

/// Say once per cache directory that `auto` keeps files.
fn notice_fallback(reason: &KeyringError, cache_dir: &Path) {
    let marker = cache_dir.join(FALLBACK_NOTICE_FILE);
    if marker.exists() {
        tracing::debug!("storage = auto: {reason}; using private files");
        return;
    }
    tracing::warn!(
        "storage = auto: {reason}; keeping credentials and refresh tokens in private files (0600) under `{}`. \
         Set storage = \"file\" in the profile (or --storage file) to choose files, or \"keyring\" to require the \
         keyring. This notice is shown once.",
        cache_dir.display()
    );
    if crate::fsutil::ensure_private_dir(cache_dir).is_ok()
        && let Err(e) = crate::fsutil::write_private_atomic(cache_dir, FALLBACK_NOTICE_FILE, b"")
    {
        tracing::debug!("cannot remember the keyring notice: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_as_configured() {
        for kind in [StorageKind::Auto, StorageKind::Keyring, StorageKind::File, StorageKind::None] {
            assert_eq!(StorageKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(StorageKind::parse("disk"), None);
        assert_eq!(StorageKind::default(), StorageKind::Auto);
    }
}
