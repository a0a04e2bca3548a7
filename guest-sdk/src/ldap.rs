//! LDAP through the host, to servers in the plugin's LDAP allowlist.
//!
//! ```no_run
//! # fn main() -> Result<(), credbroker_sdk::Error> {
//! use credbroker_sdk::{ldap, ldap_filter};
//! let directory = ldap::Connection::open("ldaps://ldap.corp.example:636")?;
//! directory.bind("cn=broker,ou=services,dc=corp", "secret")?;
//! let users = directory.search(
//!     &ldap::Search::subtree("ou=people,dc=corp", &ldap_filter::fill("(uid={})", "alice"))
//!         .attributes(&["uid", "memberOf"]),
//! )?;
//! # Ok(()) }
//! ```

use crate::bindings::credbroker::plugin::ldap as host;
use crate::{Error, HostError};

pub use host::{Entry, Scope};

/// An open LDAP connection; closed when dropped.
pub struct Connection {
    inner: host::Connection,
}

impl Connection {
    /// Connect to `url` (`ldaps://host:port`, or `ldap://host:port` with StartTLS).
    ///
    /// # Errors
    ///
    /// [`HostError::Denied`] when the server is not allowlisted for this
    /// plugin; [`HostError::Unreachable`] or [`HostError::Timeout`] when it
    /// cannot be reached.
    pub fn open(url: &str) -> Result<Self, HostError> {
        host::connect(url).map(|inner| Self { inner })
    }

    /// Simple bind; `Ok(false)` means the credentials were rejected.
    ///
    /// # Errors
    ///
    /// [`HostError::Invalid`] for an empty password (which LDAP would treat as
    /// an unauthenticated bind that always succeeds); network errors.
    pub fn try_bind(&self, dn: &str, password: &str) -> Result<bool, HostError> {
        self.inner.bind(dn, password)
    }

    /// Simple bind that must succeed (a service account).
    ///
    /// # Errors
    ///
    /// [`Error::Misconfigured`] when the server rejects the credentials.
    pub fn bind(&self, dn: &str, password: &str) -> Result<(), Error> {
        if self.try_bind(dn, password)? {
            Ok(())
        } else {
            Err(Error::misconfigured(format!(
                "the LDAP server rejected the bind as `{dn}`; check bind-dn and bind-password"
            )))
        }
    }

    /// Search.
    ///
    /// # Errors
    ///
    /// Network and protocol errors; a missing base is an empty result.
    pub fn search(&self, search: &Search) -> Result<Vec<Entry>, HostError> {
        self.inner.search(&search.request)
    }
}

/// A search under construction.
#[derive(Debug, Clone)]
pub struct Search {
    request: host::SearchRequest,
}

impl Search {
    /// Search `base` and everything below it for `filter`.
    pub fn subtree(base: &str, filter: &str) -> Self {
        Self {
            request: host::SearchRequest {
                base: base.to_string(),
                scope: Scope::Subtree,
                filter: filter.to_string(),
                attributes: Vec::new(),
                size_limit: 0,
                time_limit_seconds: 0,
            },
        }
    }

    /// Return only these attributes.
    pub fn attributes(mut self, attributes: &[&str]) -> Self {
        self.request.attributes = attributes.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Return at most `limit` entries.
    pub fn size_limit(mut self, limit: u32) -> Self {
        self.request.size_limit = limit;
        self
    }
}

impl Entry {
    /// The values of attribute `name` (case-insensitive).
    pub fn values(&self, name: &str) -> &[String] {
        self.attributes.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice()).unwrap_or(&[])
    }

    /// The first value of attribute `name`.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.values(name).first().map(String::as_str)
    }
}
