//! `ldap`: LDAP to allowlisted servers, over TLS unless the operator allows
//! plain text, performed by the host with ldap3.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope as LdapScope, SearchEntry, SearchOptions};
use url::Url;
use wasmtime::component::Resource;

use super::{GrantError, PluginContext};
use crate::runtime::bindings::ldap::{Entry, Host, HostConnection, Scope, SearchRequest};
use crate::runtime::bindings::types::HostError;

/// LDAP result code: the credentials were wrong.
const INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code: the search base does not exist.
const NO_SUCH_OBJECT: u32 = 32;
/// LDAP result code: more entries than the size limit.
const SIZE_LIMIT_EXCEEDED: u32 = 4;

/// An open connection held for the plugin (the `connection` resource).
pub struct LdapConnection {
    ldap: ldap3::Ldap,
    url: String,
}

/// One plugin's LDAP policy.
#[derive(Debug, Default)]
pub struct LdapPolicy {
    /// Allowed servers: scheme, host, port.
    servers: Vec<(String, String, u16)>,
    allow_plaintext: bool,
    ca_file: Option<PathBuf>,
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

fn server_of(url: &Url) -> Option<(String, String, u16)> {
    let port = url.port().unwrap_or(if url.scheme() == "ldaps" { 636 } else { 389 });
    Some((url.scheme().to_string(), url.host_str()?.to_ascii_lowercase(), port))
}

impl LdapPolicy {
    /// Check the operator's LDAP grants.
    ///
    /// # Errors
    ///
    /// [`GrantError::BadOrigin`] for an entry that is not an `ldap://` or
    /// `ldaps://` server URL.
    pub fn new(entries: &[String], allow_plaintext: bool, ca_file: Option<PathBuf>) -> Result<Self, GrantError> {
        let mut servers = Vec::new();
        for entry in entries {
            let bad = |reason: &str| GrantError::BadOrigin { entry: entry.clone(), reason: reason.into() };
            let url = Url::parse(entry).map_err(|e| bad(&e.to_string()))?;
            if !matches!(url.scheme(), "ldap" | "ldaps") {
                return Err(bad("the scheme must be ldap or ldaps"));
            }
            if !url.username().is_empty() || url.password().is_some() || !matches!(url.path(), "" | "/") {
                return Err(bad("only scheme, host and port"));
            }
            servers.push(server_of(&url).ok_or_else(|| bad("no host"))?);
        }
        Ok(Self { servers, allow_plaintext, ca_file, tls: OnceLock::new() })
    }

    fn check(&self, url: &str) -> Result<Url, HostError> {
        let parsed = Url::parse(url).map_err(|e| HostError::Invalid(format!("bad LDAP URL `{url}`: {e}")))?;
        if !matches!(parsed.scheme(), "ldap" | "ldaps") {
            return Err(HostError::Invalid(format!("`{url}` is not an ldap:// or ldaps:// URL")));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(HostError::Invalid("LDAP URLs with user info are refused; bind instead".into()));
        }
        let server = server_of(&parsed).ok_or_else(|| HostError::Invalid(format!("`{url}` has no host")))?;
        if !self.servers.contains(&server) {
            return Err(HostError::Denied(format!(
                "`{}://{}:{}` is not in this plugin's LDAP allowlist (grants.ldap)",
                server.0, server.1, server.2
            )));
        }
        Ok(parsed)
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, HostError> {
        self.tls
            .get_or_init(|| super::http::tls_config(self.ca_file.as_deref()).map(Arc::new))
            .clone()
            .map_err(HostError::Unreachable)
    }
}

fn ldap_error(what: &str, error: &ldap3::LdapError) -> HostError {
    match error {
        ldap3::LdapError::Timeout { .. } => HostError::Timeout(format!("{what}: {error}")),
        _ => HostError::Unreachable(format!("{what}: {error}")),
    }
}

impl PluginContext {
    fn ldap_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.network_timeout_ms)
    }

    async fn ldap_connect(&mut self, url: String) -> Result<Resource<LdapConnection>, HostError> {
        let policy = &self.policy.ldap;
        let parsed = policy.check(&url)?;
        let plain = parsed.scheme() == "ldap" && policy.allow_plaintext;
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.ldap_timeout());
        if !plain {
            settings = settings.set_config(policy.tls()?).set_starttls(parsed.scheme() == "ldap");
        }
        let connected =
            tokio::time::timeout(self.ldap_timeout(), LdapConnAsync::with_settings(settings, parsed.as_str()))
                .await
                .map_err(|_| HostError::Timeout(format!("connecting to `{url}`")))?;
        let (connection, ldap) = connected.map_err(|e| ldap_error(&format!("cannot connect to `{url}`"), &e))?;
        ldap3::drive!(connection);
        // The table is capped (see `capabilities::resource_table`).
        self.resources
            .push(LdapConnection { ldap, url })
            .map_err(|_| HostError::Invalid("too many open host resources in one run".into()))
    }
}

impl Host for PluginContext {
    async fn connect(&mut self, url: String) -> wasmtime::Result<Result<Resource<LdapConnection>, HostError>> {
        Ok(self.ldap_connect(url).await)
    }
}

impl HostConnection for PluginContext {
    async fn bind(
        &mut self,
        connection: Resource<LdapConnection>,
        dn: String,
        password: String,
    ) -> wasmtime::Result<Result<bool, HostError>> {
        if let Err(e) = self.check_call_size("bind", dn.len() + password.len()) {
            return Ok(Err(e));
        }
        // An empty password makes a simple bind "unauthenticated" (RFC 4513
        // 5.1.2), which servers accept without checking anything.
        if password.is_empty() {
            return Ok(Err(HostError::Invalid(
                "empty password: an unauthenticated LDAP bind would succeed without checking anything".into(),
            )));
        }
        self.log.mark_secret(&password);
        let timeout = self.ldap_timeout();
        let connection = self.resources.get_mut(&connection)?;
        let result = tokio::time::timeout(timeout, connection.ldap.simple_bind(&dn, &password)).await;
        Ok(match result {
            Err(_) => Err(HostError::Timeout(format!("binding at `{}`", connection.url))),
            Ok(Err(e)) => Err(ldap_error("bind", &e)),
            Ok(Ok(result)) if result.rc == 0 => Ok(true),
            Ok(Ok(result)) if result.rc == INVALID_CREDENTIALS => Ok(false),
            Ok(Ok(result)) => Err(HostError::Invalid(format!("bind failed: {result}"))),
        })
    }

    async fn search(
        &mut self,
        connection: Resource<LdapConnection>,
        request: SearchRequest,
    ) -> wasmtime::Result<Result<Vec<Entry>, HostError>> {
        let size =
            request.base.len() + request.filter.len() + request.attributes.iter().map(String::len).sum::<usize>();
        if let Err(e) = self.check_call_size("search", size) {
            return Ok(Err(e));
        }
        let limit = self.limits.max_call_bytes;
        let timeout = self.ldap_timeout();
        let connection = self.resources.get_mut(&connection)?;
        let scope = match request.scope {
            Scope::Base => LdapScope::Base,
            Scope::OneLevel => LdapScope::OneLevel,
            Scope::Subtree => LdapScope::Subtree,
        };
        let options = SearchOptions::new()
            .sizelimit(i32::try_from(request.size_limit).unwrap_or(i32::MAX))
            .timelimit(i32::try_from(request.time_limit_seconds).unwrap_or(i32::MAX));
        let search = connection.ldap.with_search_options(options).search(
            &request.base,
            scope,
            &request.filter,
            request.attributes.clone(),
        );
        let result = match tokio::time::timeout(timeout, search).await {
            Err(_) => return Ok(Err(HostError::Timeout(format!("searching at `{}`", connection.url)))),
            Ok(Err(e)) => return Ok(Err(ldap_error("search", &e))),
            Ok(Ok(result)) => result,
        };
        let ldap3::SearchResult(raw, status) = result;
        match status.rc {
            0 | SIZE_LIMIT_EXCEEDED => {}
            NO_SUCH_OBJECT => return Ok(Ok(Vec::new())),
            _ => return Ok(Err(HostError::Invalid(format!("search failed: {status}")))),
        }
        let mut entries = Vec::with_capacity(raw.len());
        let mut bytes = 0usize;
        for raw in raw {
            // ldap3 panics on malformed BER from the server; a broken server
            // must not take the host down.
            let Ok(entry) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(raw)))
            else {
                return Ok(Err(HostError::Invalid("the server sent a malformed entry".into())));
            };
            bytes += entry.dn.len()
                + entry.attrs.iter().map(|(k, v)| k.len() + v.iter().map(String::len).sum::<usize>()).sum::<usize>();
            if bytes as u64 > limit {
                return Ok(Err(HostError::Invalid(format!("the results exceed the per-call limit of {limit} bytes"))));
            }
            let mut attributes: Vec<(String, Vec<String>)> = entry.attrs.into_iter().collect();
            attributes.sort();
            entries.push(Entry { dn: entry.dn, attributes });
        }
        Ok(Ok(entries))
    }

    async fn drop(&mut self, connection: Resource<LdapConnection>) -> wasmtime::Result<()> {
        let mut connection = self.resources.delete(connection)?;
        // Best effort: the server closes the session when the socket goes anyway.
        let _ = tokio::time::timeout(Duration::from_secs(1), connection.ldap.unbind()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowlisted_servers_pass() {
        let policy =
            LdapPolicy::new(&["ldaps://ldap.corp:636".into(), "ldap://127.0.0.1:3389".into()], false, None).unwrap();
        assert!(policy.check("ldaps://LDAP.corp").is_ok());
        assert!(policy.check("ldap://127.0.0.1:3389").is_ok());
        assert!(matches!(policy.check("ldaps://127.0.0.1:3389"), Err(HostError::Denied(_))));
        assert!(matches!(policy.check("ldaps://evil.example:636"), Err(HostError::Denied(_))));
        assert!(matches!(policy.check("ldaps://admin:pw@ldap.corp"), Err(HostError::Invalid(_))));
        assert!(matches!(policy.check("https://ldap.corp"), Err(HostError::Invalid(_))));
        assert!(LdapPolicy::new(&["https://x".into()], false, None).is_err());
    }
}
