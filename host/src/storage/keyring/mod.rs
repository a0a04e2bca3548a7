//! The OS secret store: the Secret Service on Linux (`secret_service`), the
//! Credential Manager on Windows (`credential_manager`), the login Keychain
//! on macOS (`keychain`). Each backend is a
//! `Keyring` with the same calls: `check_bus`, `connect`, `get`, `put`,
//! `delete` and `delete_all`.
//!
//! On Linux, cached credentials kept in the Secret Service are also kept in
//! the kernel's user keyring ([`kernel`]), which answers a cache hit without
//! the bus; elsewhere [`kernel::KernelCache`] keeps nothing.
//!
//! Other platforms have no keyring support in this build yet: there,
//! [`Keyring::connect`] says so, and `storage = "auto"` keeps files.

use std::time::Duration;

/// Longest any keyring operation may take: a Secret Service that waits for a
/// prompt nobody sees must not stall kubectl.
pub const KEYRING_TIMEOUT: Duration = Duration::from_secs(5);

/// The `application` attribute of every item credbroker stores.
pub const APPLICATION: &str = "credbroker";

/// The keyring cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// No session bus, or no Secret Service on it, or no default collection.
    #[error("no OS keyring answers: {0}")]
    Unavailable(String),
    /// The collection or item is locked and unlocking it needs a prompt.
    #[error(
        "the OS keyring is locked; unlock it (log in to the desktop session, or run `gnome-keyring-daemon --unlock`) and retry"
    )]
    Locked,
    /// It did not answer within [`KEYRING_TIMEOUT`].
    #[error("the OS keyring did not answer within {} s", KEYRING_TIMEOUT.as_secs())]
    Timeout,
    /// The Secret Service refused a call.
    #[error("the OS keyring refused {call}: {message}")]
    Call {
        /// The call.
        call: &'static str,
        /// Its error.
        message: String,
    },
}

/// Which item: its attributes. `application` is always [`APPLICATION`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemId {
    /// `credential` or `state`.
    pub kind: &'static str,
    /// The profile (or plugin) name the user selected.
    pub profile: String,
    /// The cache key or state name within the profile.
    pub key: String,
}

impl ItemId {
    /// Its Secret Service attributes.
    #[cfg(target_os = "linux")]
    fn attributes(&self) -> std::collections::HashMap<&str, &str> {
        std::collections::HashMap::from([
            ("application", APPLICATION),
            ("kind", self.kind),
            ("profile", self.profile.as_str()),
            ("key", self.key.as_str()),
        ])
    }
}

/// Which items to remove: all of credbroker's, or one profile's, of one kind or both.
#[derive(Debug, Clone, Copy)]
pub struct Selector<'a> {
    /// `credential`, `state`, or both when `None`.
    pub kind: Option<&'static str>,
    /// One profile, or all when `None`.
    pub profile: Option<&'a str>,
    /// One item key (cache key or state name), or all when `None`.
    pub key: Option<&'a str>,
}

/// `text` with the characters that separate, filter or escape the names of
/// items escaped (`%XX`), for stores whose items are found by name rather than
/// by attributes: a profile `a/b` and a key `c` never name the item of
/// profile `a` and key `b/c`.
#[cfg(any(windows, target_os = "macos"))]
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '/' | '#' | '*' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(target_os = "linux")]
pub mod kernel;

/// No kernel keyring off Linux: nothing is kept, every read is a miss.
#[cfg(not(target_os = "linux"))]
pub mod kernel {
    use std::path::Path;
    use std::time::Duration;

    use super::ItemId;

    /// Never made: no call can fail.
    #[derive(Debug, thiserror::Error)]
    #[error("no kernel keyring on this platform")]
    pub enum KernelError {}

    /// A front cache that keeps nothing.
    #[derive(Debug, Clone)]
    pub struct KernelCache {
        _private: (),
    }

    impl KernelCache {
        /// The (empty) front cache of the cache in `scope`.
        pub fn new(_scope: &Path) -> Self {
            Self { _private: () }
        }
        /// Always a miss.
        pub fn get(&self, _: &ItemId) -> Result<Option<Vec<u8>>, KernelError> {
            Ok(None)
        }
        /// Keeps nothing.
        pub fn put(&self, _: &ItemId, _: &[u8], _: Duration) -> Result<(), KernelError> {
            Ok(())
        }
        /// Nothing to remove.
        pub fn delete(&self, _: &ItemId) -> Result<bool, KernelError> {
            Ok(false)
        }
        /// Nothing to remove.
        pub fn delete_all(&self, _: Option<&str>) -> Result<usize, KernelError> {
            Ok(0)
        }
    }
}

#[cfg(target_os = "linux")]
mod secret_service;
#[cfg(target_os = "linux")]
pub use self::secret_service::Keyring;

#[cfg(windows)]
mod credential_manager;
#[cfg(windows)]
pub use self::credential_manager::Keyring;

#[cfg(target_os = "macos")]
mod keychain;
#[cfg(target_os = "macos")]
pub use self::keychain::Keyring;

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
pub use self::unsupported::Keyring;

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
mod unsupported {
    use std::collections::HashMap;

    use super::{ItemId, KeyringError, Selector};

    /// No keyring on this platform in this build (Keychain and Credential
    /// Manager support is to come): every call says so.
    #[derive(Debug, Clone)]
    pub struct Keyring {
        _private: (),
    }

    fn unsupported() -> KeyringError {
        KeyringError::Unavailable(format!("this build has no OS keyring support on {}", std::env::consts::OS))
    }

    impl Keyring {
        /// Always [`KeyringError::Unavailable`].
        pub fn check_bus() -> Result<(), KeyringError> {
            Err(unsupported())
        }
        /// Always [`KeyringError::Unavailable`].
        pub async fn connect(_first_read: Option<&ItemId>) -> Result<Self, KeyringError> {
            Err(unsupported())
        }
        /// Unreachable: no `Keyring` is ever made.
        pub async fn get(&self, _: &ItemId) -> Result<Option<Vec<u8>>, KeyringError> {
            Err(unsupported())
        }
        /// Unreachable: no `Keyring` is ever made.
        pub async fn put(&self, _: &ItemId, _: &str, _: &[u8]) -> Result<(), KeyringError> {
            Err(unsupported())
        }
        /// Unreachable: no `Keyring` is ever made.
        pub async fn delete(&self, _: &ItemId) -> Result<bool, KeyringError> {
            Err(unsupported())
        }
        /// Unreachable: no `Keyring` is ever made.
        pub async fn delete_all(&self, _: Selector<'_>) -> Result<HashMap<&'static str, usize>, KeyringError> {
            Err(unsupported())
        }
    }
}
