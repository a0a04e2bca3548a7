//! Read-only access to files the operator granted by path.

use crate::HostError;
use crate::bindings::credbroker::plugin::files as host;

/// The bytes of the granted file at `path`.
///
/// # Errors
///
/// [`HostError::Denied`] when `path` is not granted to this plugin,
/// [`HostError::Unreachable`] when it cannot be read.
pub fn read(path: &str) -> Result<Vec<u8>, HostError> {
    host::read(path)
}

/// The granted file at `path` as UTF-8 text.
///
/// # Errors
///
/// As [`read`], and [`HostError::Invalid`] when the file is not UTF-8.
pub fn read_to_string(path: &str) -> Result<String, HostError> {
    String::from_utf8(read(path)?).map_err(|_| HostError::Invalid(format!("{path} is not UTF-8 text")))
}
