//! Asking the user, on the terminal (stderr). Only in interactive runs.

use crate::HostError;
use crate::bindings::credbroker::plugin::prompt as host;

/// Ask for a line of text.
///
/// # Errors
///
/// [`HostError::NotInteractive`] when kubectl runs credbroker without a terminal.
pub fn text(message: &str) -> Result<String, HostError> {
    host::text(message)
}

/// Ask for a secret without echoing it. The answer is redacted from logs.
///
/// # Errors
///
/// [`HostError::NotInteractive`] when kubectl runs credbroker without a terminal.
pub fn secret(message: &str) -> Result<String, HostError> {
    host::secret(message)
}

/// Show `message` to the user on stderr (also when not interactive).
///
/// # Errors
///
/// [`HostError::Invalid`] when the message is over the per-call size limit.
pub fn show(message: &str) -> Result<(), HostError> {
    host::show(message)
}
