//! Credential helpers the operator named (contract 0.1.4): the host runs a
//! command line that `grants.credential-process` lists word for word, as the
//! AWS CLI runs a profile's `credential_process`, and returns what it printed.
//! A plugin cannot start processes itself.

use crate::HostError;
use crate::bindings::credbroker::plugin::credential_process as host;

/// Run `command_line` (split as a POSIX shell quotes, no shell, standard
/// input empty; its standard error goes to the plugin's log) and return its
/// standard output.
///
/// # Errors
///
/// [`HostError::Denied`] when the command line is not granted exactly as
/// written, [`HostError::Invalid`] when it prints more than the per-call
/// limit, [`HostError::Timeout`] when it runs past the network timeout, and
/// [`HostError::Unreachable`] when it cannot be started or fails (with the
/// end of its standard error).
pub fn run(command_line: &str) -> Result<Vec<u8>, HostError> {
    host::run(command_line)
}
