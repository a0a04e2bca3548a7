//! Levelled logging into the host's log. The host bounds size and count and
//! redacts every value it knows to be secret.

pub use crate::bindings::credbroker::plugin::log::Level;

use crate::bindings::credbroker::plugin::log as host;

/// Log at trace level.
pub fn trace(message: &str) {
    host::log(Level::Trace, message);
}

/// Log at debug level.
pub fn debug(message: &str) {
    host::log(Level::Debug, message);
}

/// Log at info level.
pub fn info(message: &str) {
    host::log(Level::Info, message);
}

/// Log at warn level.
pub fn warn(message: &str) {
    host::log(Level::Warn, message);
}

/// Log at error level.
pub fn error(message: &str) {
    host::log(Level::Error, message);
}

/// Whether a message at `level` would be written (contract 0.1.1): skip
/// building expensive output nobody reads.
pub fn enabled(level: Level) -> bool {
    host::enabled(level)
}

/// Declare `value` secret: the host redacts it from every later log line.
/// Call it for tokens and passwords the plugin obtains itself.
pub fn mark_secret(value: &str) {
    if !value.is_empty() {
        host::mark_secret(value);
    }
}
