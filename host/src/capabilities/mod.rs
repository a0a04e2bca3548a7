//! Host capabilities: everything a plugin can reach outside its sandbox.
//!
//! One module per capability, each owning its WIT interface's host
//! implementation and its part of the operator's policy. The operator grants
//! capabilities per plugin in [`Grants`]; the host checks every call against
//! the resulting [`CapabilityPolicy`]. Nothing is granted by default except
//! `config` (the plugin's own settings) and `log`.

pub mod config;
pub mod crypto;
pub mod files;
pub mod http;
pub mod ldap;
pub mod log;
pub mod loopback;
pub mod prompt;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::runtime::bindings::types::HostError;
use crate::runtime::limits::Limits;
use crate::settings::ResolvedSettings;

pub use self::log::PluginLog;
pub use self::prompt::{NoTerminal, StdioTerminal, Terminal};

/// What the operator grants one plugin, as written in the configuration
/// (`[profiles.NAME.grants]`, or a validator's `grants`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Grants {
    /// Origins the `http` capability may reach: `https://idp.example.com`,
    /// `https://idp.example.com:8443`, `http://127.0.0.1:5556`, or a subdomain
    /// wildcard `https://*.example.com`.
    #[serde(default)]
    pub http: Vec<String>,
    /// Files the `files` capability may read, by absolute path. A path ending in
    /// `/` grants every file below that directory.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// A PEM bundle of CA certificates that replaces the system roots for this
    /// plugin's TLS connections (HTTPS and LDAP).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// LDAP servers the `ldap` capability may reach: `ldaps://host[:port]`, or
    /// `ldap://host[:port]` (upgraded with StartTLS).
    #[serde(default)]
    pub ldap: Vec<String>,
    /// Allow `ldap://` without StartTLS (passwords in the clear). Off by default.
    #[serde(default)]
    pub ldap_allow_plaintext: bool,
    /// Let the plugin receive one OAuth redirect on 127.0.0.1 (`loopback`).
    #[serde(default)]
    pub redirect_listener: bool,
    /// The loopback port for redirects (0: any free port).
    #[serde(default)]
    pub redirect_port: u16,
    /// Open the user's browser at the authorization URL (`xdg-open`).
    #[serde(default)]
    pub open_browser: bool,
}

/// A grant the operator wrote that makes no sense. Reported when the
/// configuration is loaded, before any plugin runs.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// An `http` entry that is not an origin.
    #[error("grants.http: `{entry}` is not an origin like https://host[:port] ({reason})")]
    BadOrigin {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `files` entry that is not an absolute, normalised path.
    #[error("grants.files: `{0}` must be an absolute path without `.` or `..`")]
    BadFile(PathBuf),
}

/// The checked form of [`Grants`], shared by every run of one plugin.
#[derive(Debug)]
pub struct CapabilityPolicy {
    pub(crate) http: http::HttpPolicy,
    pub(crate) files: files::FilePolicy,
    pub(crate) ldap: ldap::LdapPolicy,
    pub(crate) redirect_listener: bool,
    pub(crate) redirect_port: u16,
    pub(crate) open_browser: bool,
}

impl CapabilityPolicy {
    /// Check `grants` and build the policy.
    ///
    /// # Errors
    ///
    /// The first grant that is malformed.
    pub fn new(grants: &Grants) -> Result<Self, GrantError> {
        Ok(Self {
            http: http::HttpPolicy::new(&grants.http, grants.ca_file.clone())?,
            files: files::FilePolicy::new(&grants.files)?,
            ldap: ldap::LdapPolicy::new(&grants.ldap, grants.ldap_allow_plaintext, grants.ca_file.clone())?,
            redirect_listener: grants.redirect_listener,
            redirect_port: grants.redirect_port,
            open_browser: grants.open_browser,
        })
    }

    /// A policy that grants nothing.
    pub fn deny_all() -> Self {
        Self {
            http: http::HttpPolicy::deny_all(),
            files: files::FilePolicy::deny_all(),
            ldap: ldap::LdapPolicy::default(),
            redirect_listener: false,
            redirect_port: 0,
            open_browser: false,
        }
    }
}

/// The host side of one plugin run: what the capability implementations see.
pub struct PluginContext {
    pub(crate) plugin: Arc<str>,
    pub(crate) settings: Arc<ResolvedSettings>,
    pub(crate) policy: Arc<CapabilityPolicy>,
    pub(crate) limits: Limits,
    pub(crate) interactive: bool,
    pub(crate) terminal: Arc<dyn Terminal>,
    pub(crate) log: PluginLog,
    /// Host resources the plugin holds: LDAP connections, redirect listeners.
    pub(crate) resources: wasmtime::component::ResourceTable,
    /// The plugin's persistent key-value store.
    pub(crate) state: state::PluginState,
}

/// Most host resources (connections, listeners) one run may hold at once.
pub const MAX_RESOURCES: usize = 16;

/// A resource table capped at [`MAX_RESOURCES`].
pub fn resource_table() -> wasmtime::component::ResourceTable {
    let mut table = wasmtime::component::ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    table
}

impl PluginContext {
    /// Refuse inputs over the per-call byte limit.
    fn check_call_size(&self, what: &str, bytes: usize) -> Result<(), HostError> {
        if bytes as u64 > self.limits.max_call_bytes {
            return Err(HostError::Invalid(format!(
                "{what} of {bytes} bytes exceeds the per-call limit of {} bytes",
                self.limits.max_call_bytes
            )));
        }
        Ok(())
    }
}

impl crate::runtime::bindings::types::Host for PluginContext {}

/// Replace control characters (terminal escape sequences included) so text a
/// plugin hands the host cannot drive the user's terminal. Newlines and tabs
/// stay when `keep_newlines`.
pub(crate) fn sanitize(text: &str, keep_newlines: bool) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' if keep_newlines => c,
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}
