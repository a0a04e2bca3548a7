//! A small key-value store the host keeps for the plugin between runs: a
//! private file per profile for providers (e.g. refresh tokens), process memory
//! per validator (e.g. a JWKS cache). Bounded in size.

use crate::HostError;
use crate::bindings::credbroker::plugin::state as host;

/// The bytes stored under `key`.
pub fn get(key: &str) -> Option<Vec<u8>> {
    host::get(key)
}

/// The UTF-8 text stored under `key`.
pub fn get_string(key: &str) -> Option<String> {
    get(key).and_then(|bytes| String::from_utf8(bytes).ok())
}

/// Store `value` under `key`.
///
/// # Errors
///
/// [`HostError::Invalid`] when the store would exceed its size limit;
/// [`HostError::Unreachable`] when it cannot be saved.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), HostError> {
    host::set(key, value.as_ref())
}

/// Remove `key`.
///
/// # Errors
///
/// [`HostError::Unreachable`] when the store cannot be saved.
pub fn delete(key: &str) -> Result<(), HostError> {
    host::delete(key)
}
