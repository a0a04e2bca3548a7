//! Signature checks the host computes at native speed (contract 0.1.2): use
//! them for token signatures checked on every review. Always granted.

use crate::HostError;
use crate::bindings::credbroker::plugin::crypto as host;
pub use crate::bindings::credbroker::plugin::crypto::{PublicKey, RsaPublicKey};

/// Whether `signature` is valid for `message` under `key`, with the JOSE
/// algorithm `algorithm` (`RS256`, `PS256`, `ES256`, `EdDSA`, ...).
///
/// # Errors
///
/// [`HostError::Invalid`] for an unknown algorithm or a key that does not
/// suit it (a wrong signature is `Ok(false)`).
pub fn verify_signature(algorithm: &str, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, HostError> {
    host::verify_signature(algorithm, key, message, signature)
}
