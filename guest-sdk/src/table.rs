//! A read-only table the host keeps for a validator (contract 0.1.5): its
//! [`Validator::setup`](crate::Validator::setup) fills it, every review looks
//! keys up in it.
//!
//! Whatever a setup builds in the plugin's own memory is part of the image
//! every review instance starts from; large data (a file of a million tokens)
//! is cheaper here: the host keeps it once, and a lookup is one hash probe in
//! the host, so a review costs the same whatever the table holds. In a review
//! the table is read only. Keys are at most 1 KiB and values 64 KiB; the
//! table counts against the setup's `memory-mib`.
//!
//! ```no_run
//! use credbroker_sdk::table;
//! # fn setup() -> Result<(), credbroker_sdk::Error> {
//! // In setup: index what the reviews need.
//! table::insert(b"key", b"value")?;
//! # Ok(()) }
//! // In a review:
//! let value = table::get(b"key");
//! ```

use crate::HostError;
use crate::bindings::credbroker::plugin::table as host;

/// Add `value` under `key`: `false`, and nothing changed, when `key` is
/// already there (the first value stays).
///
/// # Errors
///
/// [`HostError::Invalid`] in a review (the table is read only), for a key or
/// value over its bound, or when the table would exceed the plugin's memory.
pub fn insert(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<bool, HostError> {
    host::insert(key.as_ref(), value.as_ref())
}

/// The value under `key`, if any.
pub fn get(key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    host::get(key.as_ref())
}

/// How many entries the table holds.
pub fn len() -> u64 {
    host::len()
}
