//! `ldap`: LDAP to allowlisted servers, over TLS unless the operator allows
//! plain text, performed by the host with ldap3.
//!
//! Each connection's protocol driver runs inside the plugin's own calls (not
//! in a task of its own), so the host's LDAP work is charged to the plugin,
//! and nothing is read from the server between calls. Searches are streamed:
//! entries are counted as they arrive and the search stops, with the
//! connection closed, as soon as they pass `max-call-bytes`, whatever the
//! server keeps sending.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope as LdapScope, SearchEntry, SearchOptions};
use url::Url;
use wasmtime::component::{Linker, Resource, ResourceTable};

use super::tls::TlsPolicy;
use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::bindings::ldap::{Entry, Host, HostConnection, Scope, SearchRequest, add_to_linker};
use crate::bindings::types::HostError;
use crate::boundary::wire::WireSize;
use crate::boundary::{Boundary, CapView, ViewOf};

/// LDAP result code: the credentials were wrong.
const INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code: the search base does not exist.
const NO_SUCH_OBJECT: u32 = 32;
/// LDAP result code: more entries than the size limit.
const SIZE_LIMIT_EXCEEDED: u32 = 4;
/// Most connections one run may hold open.
const MAX_CONNECTIONS: usize = 8;
/// Host memory charged for one open connection (buffers, TLS state).
const CONNECTION_BYTES: usize = 64 * 1024;

/// The `ldap` capability.
pub struct Ldap;

impl Capability for Ldap {
    const INTERFACE: &'static str = "ldap";
    const WHAT: &'static str = "LDAP binds and searches";
    const GRANT: &'static str = "grants.ldap: allowed servers";
    type Policy = LdapPolicy;
    type State = LdapRun;

    fn configure(grants: &mut GrantTable, plugin: &PluginSetup) -> Result<LdapPolicy, GrantError> {
        let servers: Vec<String> = grants.take("ldap")?;
        let plaintext: bool = grants.take("ldap-allow-plaintext")?;
        LdapPolicy::new(&servers, plaintext, Arc::clone(&plugin.tls))
    }

    fn open_resources(state: &LdapRun) -> usize {
        usize::from(!state.connections.is_empty())
    }

    fn prepare(policy: &Arc<LdapPolicy>) -> LdapRun {
        let mut connections = ResourceTable::new();
        connections.set_max_capacity(MAX_CONNECTIONS);
        LdapRun { policy: Arc::clone(policy), connections }
    }

    fn link(
        linker: &mut Linker<HostState>,
        view: fn(&mut HostState) -> CapView<'_, Self::State>,
    ) -> wasmtime::Result<()> {
        add_to_linker::<HostState, ViewOf<Self::State>>(linker, view)
    }
}

type Driver = Pin<Box<dyn Future<Output = ldap3::result::Result<()>> + Send>>;

/// An open connection held for the plugin (the `connection` resource): the
/// handle and the protocol driver that the host polls during each call.
pub struct LdapConnection {
    ldap: ldap3::Ldap,
    driver: Option<Driver>,
    url: String,
    _held: crate::boundary::memory::Held,
}

impl LdapConnection {
    /// Run `op` on the connection while driving it; the connection is closed
    /// for good once the driver ends.
    async fn drive<T>(
        &mut self,
        op: impl AsyncFnOnce(&mut ldap3::Ldap) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        let Some(driver) = self.driver.as_mut() else {
            return Err(HostError::Unreachable(format!("the connection to `{}` is closed", self.url)));
        };
        let ldap = &mut self.ldap;
        let outcome = tokio::select! {
            biased;
            result = op(ldap) => Some(result),
            ended = driver => {
                tracing::debug!("LDAP connection ended: {ended:?}");
                None
            }
        };
        match outcome {
            Some(result) => result,
            None => {
                self.driver = None;
                Err(HostError::Unreachable(format!("the connection to `{}` was closed", self.url)))
            }
        }
    }

    /// Close the connection: the server may still be sending what nobody
    /// will read.
    fn close(&mut self) {
        self.driver = None;
    }
}

/// One plugin's LDAP policy.
#[derive(Debug)]
pub struct LdapPolicy {
    /// Allowed servers: scheme, host, port.
    servers: Vec<(String, String, u16)>,
    allow_plaintext: bool,
    tls: Arc<TlsPolicy>,
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
    pub fn new(entries: &[String], allow_plaintext: bool, tls: Arc<TlsPolicy>) -> Result<Self, GrantError> {
        let mut servers = Vec::new();
        for entry in entries {
            let bad = |reason: &str| GrantError::BadOrigin {
                grant: "ldap",
                entry: crate::boundary::text::name(entry).into_owned(),
                example: "ldaps://host[:port]",
                reason: reason.into(),
            };
            let url = Url::parse(entry).map_err(|e| bad(&e.to_string()))?;
            if !matches!(url.scheme(), "ldap" | "ldaps") {
                return Err(bad("the scheme must be ldap or ldaps"));
            }
            if !url.username().is_empty() || url.password().is_some() || !matches!(url.path(), "" | "/") {
                return Err(bad("only scheme, host and port"));
            }
            servers.push(server_of(&url).ok_or_else(|| bad("no host"))?);
        }
        Ok(Self { servers, allow_plaintext, tls })
    }

    /// The allowlisted servers, as URLs.
    pub fn servers(&self) -> Vec<String> {
        self.servers.iter().map(|(scheme, host, port)| format!("{scheme}://{host}:{port}")).collect()
    }

    fn check(&self, url: &str) -> Result<Url, HostError> {
        let shown = crate::boundary::text::name(url);
        let parsed = Url::parse(url).map_err(|e| HostError::Invalid(format!("bad LDAP URL `{shown}`: {e}")))?;
        if !matches!(parsed.scheme(), "ldap" | "ldaps") {
            return Err(HostError::Invalid(format!("`{shown}` is not an ldap:// or ldaps:// URL")));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(HostError::Invalid("LDAP URLs with user info are refused; bind instead".into()));
        }
        let server = server_of(&parsed).ok_or_else(|| HostError::Invalid(format!("`{shown}` has no host")))?;
        if !self.servers.contains(&server) {
            return Err(HostError::Denied(format!(
                "`{}://{}:{}` is not in this plugin's LDAP allowlist (grants.ldap)",
                server.0, server.1, server.2
            )));
        }
        Ok(parsed)
    }
}

fn ldap_error(what: &str, error: &ldap3::LdapError) -> HostError {
    match error {
        ldap3::LdapError::Timeout { .. } => HostError::Timeout(format!("{what}: {error}")),
        _ => HostError::Unreachable(format!("{what}: {error}")),
    }
}

/// A run's LDAP connections.
pub struct LdapRun {
    policy: Arc<LdapPolicy>,
    connections: ResourceTable,
}

impl LdapRun {
    async fn connect(&mut self, boundary: &Boundary, url: String) -> Result<Resource<LdapConnection>, HostError> {
        let policy = &self.policy;
        let parsed = policy.check(&url)?;
        let held = boundary
            .memory()
            .hold(CONNECTION_BYTES)
            .map_err(|e| HostError::Invalid(format!("cannot open another connection: the plugin {e}")))?;
        let plain = parsed.scheme() == "ldap" && policy.allow_plaintext;
        let timeout = boundary.network_timeout();
        let mut settings = LdapConnSettings::new().set_conn_timeout(timeout);
        if !plain {
            let tls = policy.tls.client_config().map_err(HostError::Unreachable)?;
            settings = settings.set_config(tls).set_starttls(parsed.scheme() == "ldap");
        }
        let connected = tokio::time::timeout(timeout, LdapConnAsync::with_settings(settings, parsed.as_str()))
            .await
            .map_err(|_| HostError::Timeout(format!("connecting to `{}`", parsed.as_str())))?;
        let (connection, ldap) =
            connected.map_err(|e| ldap_error(&format!("cannot connect to `{}`", parsed.as_str()), &e))?;
        self.connections
            .push(LdapConnection {
                ldap,
                driver: Some(Box::pin(connection.drive())),
                url: parsed.as_str().to_string(),
                _held: held,
            })
            .map_err(|_| HostError::Invalid(format!("at most {MAX_CONNECTIONS} LDAP connections may be open at once")))
    }

    async fn bind(
        &mut self,
        boundary: &Boundary,
        connection: &Resource<LdapConnection>,
        dn: String,
        password: String,
    ) -> wasmtime::Result<Result<bool, HostError>> {
        // An empty password makes a simple bind "unauthenticated" (RFC 4513
        // 5.1.2), which servers accept without checking anything.
        if password.is_empty() {
            return Ok(Err(HostError::Invalid(
                "empty password: an unauthenticated LDAP bind would succeed without checking anything".into(),
            )));
        }
        if let Err(e) = boundary.output().mark_secret(&password) {
            return Err(crate::limits::LimitExceeded::from(e).into());
        }
        let timeout = boundary.network_timeout();
        let connection = self.connections.get_mut(connection)?;
        let url = connection.url.clone();
        Ok(connection
            .drive(async |ldap| match tokio::time::timeout(timeout, ldap.simple_bind(&dn, &password)).await {
                Err(_) => Err(HostError::Timeout(format!("binding at `{url}`"))),
                Ok(Err(e)) => Err(ldap_error("bind", &e)),
                Ok(Ok(result)) if result.rc == 0 => Ok(true),
                Ok(Ok(result)) if result.rc == INVALID_CREDENTIALS => Ok(false),
                Ok(Ok(result)) => Err(HostError::Invalid(format!("bind failed: {result}"))),
            })
            .await)
    }

    async fn search(
        &mut self,
        boundary: &Boundary,
        connection: &Resource<LdapConnection>,
        request: SearchRequest,
    ) -> wasmtime::Result<Result<Vec<Entry>, HostError>> {
        let limit = boundary.max_call_bytes();
        let timeout = boundary.network_timeout();
        let scope = match request.scope {
            Scope::Base => LdapScope::Base,
            Scope::OneLevel => LdapScope::OneLevel,
            Scope::Subtree => LdapScope::Subtree,
        };
        let options = SearchOptions::new()
            .sizelimit(i32::try_from(request.size_limit).unwrap_or(i32::MAX))
            .timelimit(i32::try_from(request.time_limit_seconds).unwrap_or(i32::MAX));
        let connection = self.connections.get_mut(connection)?;
        let url = connection.url.clone();
        let mut stopped = false;
        let stopped_ref = &mut stopped;
        let search = async move |ldap: &mut ldap3::Ldap| {
            let mut stream = ldap
                .with_search_options(options)
                .streaming_search(&request.base, scope, &request.filter, request.attributes.clone())
                .await
                .map_err(|e| ldap_error("search", &e))?;
            let mut entries = Vec::new();
            let mut bytes = 8usize;
            let mut held = boundary.memory().hold(0).map_err(|e| HostError::Invalid(e.to_string()))?;
            while let Some(raw) = stream.next().await.map_err(|e| ldap_error("search", &e))? {
                if raw.is_ref() || raw.is_intermediate() {
                    continue;
                }
                // ldap3 panics on malformed BER from the server; a broken
                // server must not take the host down.
                let Ok(entry) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(raw)))
                else {
                    *stopped_ref = true;
                    return Err(HostError::Invalid("the server sent a malformed entry".into()));
                };
                let mut attributes: Vec<(String, Vec<String>)> = entry.attrs.into_iter().collect();
                attributes.sort();
                let entry = Entry { dn: entry.dn, attributes };
                bytes = bytes.saturating_add(entry.wire_size());
                if bytes > limit {
                    *stopped_ref = true;
                    return Err(HostError::Invalid(format!(
                        "the search results exceed the per-call limit (max-call-bytes) of {limit} bytes; \
                         the search was stopped"
                    )));
                }
                if let Err(e) = held.resize(bytes) {
                    *stopped_ref = true;
                    return Err(HostError::Invalid(format!("the plugin {e} while searching")));
                }
                if let Err(e) = boundary.check_time() {
                    *stopped_ref = true;
                    return Err(e);
                }
                entries.push(entry);
            }
            let status = stream.finish().await;
            match status.rc {
                0 | SIZE_LIMIT_EXCEEDED => Ok(entries),
                NO_SUCH_OBJECT => Ok(Vec::new()),
                _ => Err(HostError::Invalid(format!("search failed: {status}"))),
            }
        };
        let result = connection
            .drive(async move |ldap| match tokio::time::timeout(timeout, search(ldap)).await {
                Err(_) => Err(HostError::Timeout(format!("searching at `{url}`"))),
                Ok(result) => result,
            })
            .await;
        if stopped || matches!(result, Err(HostError::Timeout(_))) {
            connection.close();
        }
        Ok(result)
    }
}

impl Host for CapView<'_, LdapRun> {
    async fn connect(&mut self, url: String) -> wasmtime::Result<Result<Resource<LdapConnection>, HostError>> {
        self.call("ldap.connect", url.wire_size(), async |ldap, boundary| Ok(ldap.connect(boundary, url).await)).await
    }
}

impl HostConnection for CapView<'_, LdapRun> {
    async fn bind(
        &mut self,
        connection: Resource<LdapConnection>,
        dn: String,
        password: String,
    ) -> wasmtime::Result<Result<bool, HostError>> {
        let size = 4 + dn.wire_size() + password.wire_size();
        self.call("ldap.connection.bind", size, async |ldap, boundary| {
            ldap.bind(boundary, &connection, dn, password).await
        })
        .await
    }

    async fn search(
        &mut self,
        connection: Resource<LdapConnection>,
        request: SearchRequest,
    ) -> wasmtime::Result<Result<Vec<Entry>, HostError>> {
        self.call("ldap.connection.search", 4 + request.wire_size(), async |ldap, boundary| {
            ldap.search(boundary, &connection, request).await
        })
        .await
    }

    async fn drop(&mut self, connection: Resource<LdapConnection>) -> wasmtime::Result<()> {
        let mut connection = self.state.connections.delete(connection)?;
        // Best effort: the server ends the session when the socket closes anyway.
        let _ =
            tokio::time::timeout(Duration::from_secs(1), connection.drive(async |ldap| Ok(ldap.unbind().await))).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowlisted_servers_pass() {
        let tls = Arc::new(TlsPolicy::default());
        let policy =
            LdapPolicy::new(&["ldaps://ldap.corp:636".into(), "ldap://127.0.0.1:3389".into()], false, tls.clone())
                .unwrap();
        assert!(policy.check("ldaps://LDAP.corp").is_ok());
        assert!(policy.check("ldap://127.0.0.1:3389").is_ok());
        assert!(matches!(policy.check("ldaps://127.0.0.1:3389"), Err(HostError::Denied(_))));
        assert!(matches!(policy.check("ldaps://evil.example:636"), Err(HostError::Denied(_))));
        assert!(matches!(policy.check("ldaps://admin:pw@ldap.corp"), Err(HostError::Invalid(_))));
        assert!(matches!(policy.check("https://ldap.corp"), Err(HostError::Invalid(_))));
        assert!(LdapPolicy::new(&["https://x".into()], false, tls).is_err());
    }
}
