//! The plugin's settings, as the operator configured them.
//!
//! Values the operator wrote as `env:NAME` or `file:PATH` arrive resolved: the
//! host reads them, the plugin never sees the environment or filesystem.

use crate::Error;
use crate::bindings::credbroker::plugin::config as host;

/// The value of setting `key`, if set.
pub fn get(key: &str) -> Option<String> {
    host::get(key)
}

/// The value of setting `key`, or an error telling the operator to set it.
///
/// # Errors
///
/// [`Error::Misconfigured`] when the setting is missing or empty.
pub fn require(key: &str) -> Result<String, Error> {
    match host::get(key) {
        Some(value) if !value.is_empty() => Ok(value),
        Some(_) => Err(Error::misconfigured(format!("setting `{key}` is empty"))),
        None => Err(Error::misconfigured(format!(
            "setting `{key}` is required (pass --set {key}=... or add it to the profile's settings)"
        ))),
    }
}

/// The value of setting `key`, like [`require`], declared secret: the host
/// redacts it from every later log line (as [`log::mark_secret`] does). Use
/// it for API keys, client secrets and passwords.
///
/// Values the operator wrote as `env:NAME` or `file:PATH`, and settings
/// whose names contain `token`, `password`, `secret`, `private-key`,
/// `client-key` or `credential`, are redacted by the host anyway; this
/// covers every other name (`api-key`) and literal values.
///
/// # Errors
///
/// [`Error::Misconfigured`] when the setting is missing or empty.
///
/// [`log::mark_secret`]: crate::log::mark_secret
pub fn require_secret(key: &str) -> Result<String, Error> {
    let value = require(key)?;
    crate::log::mark_secret(&value);
    Ok(value)
}

/// Setting `key` parsed as `T`, or `default` when unset.
///
/// # Errors
///
/// [`Error::Misconfigured`] when the value does not parse.
pub fn parse_or<T: std::str::FromStr>(key: &str, default: T) -> Result<T, Error> {
    match host::get(key) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|_| Error::misconfigured(format!("setting `{key}` has an invalid value `{value}`"))),
    }
}

/// Setting `key` as a boolean (`true`/`false`, `yes`/`no`, `1`/`0`), or `default`.
///
/// # Errors
///
/// [`Error::Misconfigured`] for any other value.
pub fn flag(key: &str, default: bool) -> Result<bool, Error> {
    match host::get(key).as_deref().map(str::trim) {
        None => Ok(default),
        Some("true" | "yes" | "1" | "on") => Ok(true),
        Some("false" | "no" | "0" | "off") => Ok(false),
        Some(other) => Err(Error::misconfigured(format!("setting `{key}` must be true or false, not `{other}`"))),
    }
}

/// The names of all settings.
pub fn keys() -> Vec<String> {
    host::keys()
}
