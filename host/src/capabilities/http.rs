//! `http`: outbound HTTP(S) performed by the host, limited to the origins the
//! operator allowlisted for the plugin, on every hop of every redirect.
//!
//! The client is HTTP/1.1 on hyper's connection API, with the connection
//! driven inside the plugin's own call rather than in a background task: the
//! host's work for a request (TLS, parsing, whatever a hostile server sends)
//! is charged to the plugin's CPU account, and every byte read from the
//! server counts against a bound derived from `max-call-bytes`, so neither an
//! endless stream of `100 Continue` heads nor a huge header block can make
//! the host spin or hoard. A proxy is used only when the operator grants one
//! (`http-proxy`); the environment's `HTTP_PROXY` is never read.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use url::Url;
use wasmtime::component::Linker;

use super::tls::TlsPolicy;
use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::bindings::http::{Host, Request, Response, add_to_linker};
use crate::bindings::types::HostError;
use crate::boundary::wire::WireSize;
use crate::boundary::{Boundary, CapView, ViewOf};

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Bytes a server may send beyond `max-call-bytes` (status lines, headers,
/// chunk framing, informational responses) before the request is cut off.
const TRANSPORT_SLACK: usize = 64 * 1024;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// The `http` capability.
pub struct Http;

impl Capability for Http {
    const INTERFACE: &'static str = "http";
    const WHAT: &'static str = "HTTP requests";
    const GRANT: &'static str = "grants.http: allowed origins";
    type Policy = HttpPolicy;
    type State = HttpRun;

    fn configure(grants: &mut GrantTable, plugin: &PluginSetup) -> Result<HttpPolicy, GrantError> {
        let origins: Vec<String> = grants.take("http")?;
        let allow_plaintext: bool = grants.take("http-allow-plaintext")?;
        let proxy: Option<String> = grants.take("http-proxy")?;
        HttpPolicy::new(&origins, allow_plaintext, proxy.as_deref(), Arc::clone(&plugin.tls))
    }

    fn prepare(policy: &Arc<HttpPolicy>) -> HttpRun {
        HttpRun { policy: Arc::clone(policy) }
    }

    fn link(
        linker: &mut Linker<HostState>,
        view: fn(&mut HostState) -> CapView<'_, Self::State>,
    ) -> wasmtime::Result<()> {
        add_to_linker::<HostState, ViewOf<Self::State>>(linker, view)
    }
}

/// One allowlist entry: a scheme, a host (or `*.domain`), a port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedOrigin {
    scheme: String,
    host: HostPattern,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com`, not the domain itself.
    Subdomains(String),
}

/// Whether `host` (as the URL parser normalises it) is a loopback address
/// or `localhost`.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl AllowedOrigin {
    fn parse(entry: &str) -> Result<Self, GrantError> {
        let bad = |reason: &str| GrantError::BadOrigin {
            grant: "http",
            entry: crate::boundary::text::name(entry).into_owned(),
            example: "https://host[:port]",
            reason: reason.to_string(),
        };
        let (wildcard, parse_from) = match entry.split_once("://*.") {
            Some((scheme, rest)) => (true, format!("{scheme}://{rest}")),
            None => (false, entry.to_string()),
        };
        let url = Url::parse(&parse_from).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("no user info"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("no path, query or fragment"));
        }
        let host = url.host_str().ok_or_else(|| bad("no host"))?;
        if host.ends_with('.') {
            return Err(bad("no trailing dot"));
        }
        let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
        Ok(Self {
            scheme: url.scheme().to_string(),
            host: if wildcard {
                HostPattern::Subdomains(host.to_string())
            } else {
                HostPattern::Exact(host.to_string())
            },
            port,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme == scheme
            && self.port == port
            && match &self.host {
                HostPattern::Exact(h) => h == host,
                HostPattern::Subdomains(domain) => {
                    host.strip_suffix(domain.as_str()).is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
                }
            }
    }

    fn is_plaintext_remote(&self) -> bool {
        self.scheme == "http"
            && match &self.host {
                HostPattern::Exact(host) => !is_loopback(host),
                HostPattern::Subdomains(_) => true,
            }
    }
}

/// Check `url` against `origins`; the error says exactly why it is refused.
fn check_url(origins: &[AllowedOrigin], url: &Url) -> Result<(), HostError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(HostError::Invalid(format!("`{}` URLs are not supported; use http or https", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(HostError::Invalid(
            "URLs with user info (user@host) are refused; send credentials in headers".into(),
        ));
    }
    let host = url.host_str().ok_or_else(|| HostError::Invalid("the URL has no host".into()))?;
    let port = url.port_or_known_default().ok_or_else(|| HostError::Invalid("the URL has no port".into()))?;
    let origin = format!("{}://{}:{}", url.scheme(), host, port);
    if host.ends_with('.') {
        return Err(HostError::Denied(format!(
            "`{origin}` is not in this plugin's allowlist (grants.http); host names with a trailing dot never match"
        )));
    }
    if origins.iter().any(|o| o.allows(url.scheme(), host, port)) {
        Ok(())
    } else {
        Err(HostError::Denied(format!("`{origin}` is not in this plugin's allowlist (grants.http)")))
    }
}

/// One plugin's HTTP policy.
#[derive(Debug)]
pub struct HttpPolicy {
    origins: Vec<AllowedOrigin>,
    proxy: Option<(String, u16)>,
    tls: Arc<TlsPolicy>,
}

impl HttpPolicy {
    /// Check the operator's origins and proxy.
    ///
    /// # Errors
    ///
    /// [`GrantError`] for the first malformed entry, and for a plain `http://`
    /// origin that is not loopback unless `allow_plaintext`.
    pub fn new(
        entries: &[String],
        allow_plaintext: bool,
        proxy: Option<&str>,
        tls: Arc<TlsPolicy>,
    ) -> Result<Self, GrantError> {
        let origins = entries.iter().map(|e| AllowedOrigin::parse(e)).collect::<Result<Vec<_>, _>>()?;
        for (origin, entry) in origins.iter().zip(entries) {
            if origin.is_plaintext_remote() {
                if !allow_plaintext {
                    return Err(GrantError::Invalid {
                        key: "http",
                        message: format!(
                            "`{}` is plain HTTP to a host that is not loopback: what the plugin sends (API keys, \
                             tokens) would cross the network in the clear; use https, or set \
                             http-allow-plaintext = true to allow it anyway",
                            crate::boundary::text::name(entry)
                        ),
                    });
                }
                tracing::warn!(
                    "grants.http allows plain HTTP to `{}`: requests to it cross the network unencrypted",
                    crate::boundary::text::name(entry)
                );
            }
        }
        let proxy = proxy.map(parse_proxy).transpose()?;
        Ok(Self { origins, proxy, tls })
    }

    /// The allowlisted origins, as written back (`https://host:port`).
    pub fn origins(&self) -> Vec<String> {
        self.origins
            .iter()
            .map(|o| match &o.host {
                HostPattern::Exact(h) => format!("{}://{h}:{}", o.scheme, o.port),
                HostPattern::Subdomains(d) => format!("{}://*.{d}:{}", o.scheme, o.port),
            })
            .collect()
    }
}

fn parse_proxy(proxy: &str) -> Result<(String, u16), GrantError> {
    let bad = |reason: &str| GrantError::BadOrigin {
        grant: "http-proxy",
        entry: crate::boundary::text::name(proxy).into_owned(),
        example: "http://proxy.corp:3128",
        reason: reason.into(),
    };
    let url = Url::parse(proxy).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "http" {
        return Err(bad("the proxy is reached over plain http:// (HTTPS requests are tunnelled through it)"));
    }
    if url.path() != "/" || !url.username().is_empty() {
        return Err(bad("only scheme, host and port"));
    }
    let host = url.host_str().ok_or_else(|| bad("no host"))?.to_string();
    Ok((host, url.port_or_known_default().unwrap_or(80)))
}

/// A run's HTTP: the policy it checks against.
pub struct HttpRun {
    policy: Arc<HttpPolicy>,
}

/// A socket that counts what it reads and fails once the count passes its
/// bound: what a server sends is bounded however it frames it.
struct Counted<S> {
    inner: S,
    read: Arc<AtomicUsize>,
    limit: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let total = self.read.fetch_add(buf.filled().len() - before, Ordering::Relaxed) + buf.filled().len() - before;
        if total > self.limit {
            return Poll::Ready(Err(std::io::Error::other(OverLimit)));
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The server sent more than the request may read.
#[derive(Debug)]
struct OverLimit;

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server sent more than the per-call limit allows")
    }
}

impl std::error::Error for OverLimit {}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Whether `error` (or what caused it) is the transport bound.
fn is_over_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        // An io::Error hides the error it wraps from `source`.
        let wrapped = e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
        if e.is::<OverLimit>() || wrapped.is_some_and(|inner| inner.is::<OverLimit>()) {
            return true;
        }
        source = e.source();
    }
    false
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// One request and its response on a fresh connection.
struct Exchange<'a> {
    policy: &'a HttpPolicy,
    method: hyper::Method,
    url: &'a Url,
    headers: &'a [(HeaderName, HeaderValue)],
    body: Bytes,
    /// Bytes the response (head, body, framing) may take.
    read_limit: usize,
    body_limit: usize,
}

/// A response as read.
struct Received {
    status: u16,
    headers: Vec<(String, String)>,
    location: Option<String>,
    body: Vec<u8>,
}

impl Exchange<'_> {
    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, HostError> {
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| HostError::Unreachable(format!("cannot connect to {host}:{port}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Open a connection to the URL's origin: directly, or through the proxy
    /// (a CONNECT tunnel for https).
    async fn open(&self, read: &Arc<AtomicUsize>) -> Result<Box<dyn Io>, HostError> {
        let host = self.url.host_str().unwrap_or_default();
        let port = self.url.port_or_known_default().unwrap_or(443);
        let tcp = match &self.policy.proxy {
            None => self.connect(host, port).await?,
            Some((proxy_host, proxy_port)) => {
                let mut tcp = self.connect(proxy_host, *proxy_port).await?;
                if self.url.scheme() == "https" {
                    tunnel(&mut tcp, host, port).await?;
                }
                tcp
            }
        };
        let counted = Counted { inner: tcp, read: Arc::clone(read), limit: self.read_limit };
        if self.url.scheme() != "https" {
            return Ok(Box::new(counted));
        }
        let mut config =
            rustls::ClientConfig::clone(&*self.policy.tls.client_config().map_err(HostError::Unreachable)?);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| HostError::Invalid(format!("bad host name `{host}`: {e}")))?
            .to_owned();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, counted)
            .await
            .map_err(|e| HostError::Unreachable(format!("TLS with {host}:{port} failed: {e}")))?;
        Ok(Box::new(tls))
    }

    async fn run(&self) -> Result<Received, HostError> {
        let read = Arc::new(AtomicUsize::new(0));
        let io = self.open(&read).await?;
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD.max(8192))
            .handshake::<_, Full<Bytes>>(TokioIo::new(io))
            .await
            .map_err(|e| HostError::Unreachable(format!("HTTP handshake failed: {e}")))?;
        let target = match (&self.policy.proxy, self.url.scheme()) {
            // Through a proxy, plain http requests name the whole URL.
            (Some(_), "http") => self.url.as_str().to_string(),
            _ => match self.url.query() {
                Some(query) => format!("{}?{query}", self.url.path()),
                None => self.url.path().to_string(),
            },
        };
        let host = match self.url.port() {
            Some(port) => format!("{}:{port}", self.url.host_str().unwrap_or_default()),
            None => self.url.host_str().unwrap_or_default().to_string(),
        };
        let mut builder = hyper::Request::builder().method(self.method.clone()).uri(target).header("host", host);
        let has_agent = self.headers.iter().any(|(n, _)| n == hyper::header::USER_AGENT);
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        if !has_agent {
            builder = builder.header(hyper::header::USER_AGENT, concat!("credbroker/", env!("CARGO_PKG_VERSION")));
        }
        let request = builder
            .body(Full::new(self.body.clone()))
            .map_err(|e| HostError::Invalid(format!("cannot build the request: {e}")))?;
        let body_limit = self.body_limit;
        let exchange = async move {
            let response = sender.send_request(request).await?;
            let (parts, mut body) = response.into_parts();
            let mut bytes = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    if bytes.len() + data.len() > body_limit {
                        return Ok(Err(parts.status.as_u16()));
                    }
                    bytes.extend_from_slice(&data);
                }
            }
            Ok::<_, hyper::Error>(Ok((parts, bytes)))
        };
        // The connection is driven here, in the plugin's call, not in a task
        // of its own: its work is the plugin's.
        let mut connection = std::pin::pin!(connection);
        let mut exchange = std::pin::pin!(exchange);
        let outcome = tokio::select! {
            biased;
            outcome = &mut exchange => outcome,
            closed = &mut connection => match closed {
                // What the server sent before it closed is still to be read.
                Ok(()) => exchange.await,
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(Ok((parts, body))) => {
                let headers: Vec<(String, String)> = parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect();
                let location =
                    parts.headers.get(hyper::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
                Ok(Received { status: parts.status.as_u16(), headers, location, body })
            }
            Ok(Err(_status)) => Err(HostError::Invalid(format!(
                "the response body exceeds the per-call limit (max-call-bytes) of {} bytes",
                self.body_limit
            ))),
            Err(e) if is_over_limit(&e) => Err(HostError::Invalid(format!(
                "the server sent more than the request may read ({} bytes: max-call-bytes plus {TRANSPORT_SLACK} \
                 for headers and framing)",
                self.read_limit
            ))),
            Err(e) if e.is_timeout() => Err(HostError::Timeout(error_chain(&e))),
            Err(e) => Err(HostError::Unreachable(error_chain(&e))),
        }
    }
}

/// Ask the proxy on `tcp` for a tunnel to `host:port`.
async fn tunnel(tcp: &mut TcpStream, host: &str, port: u16) -> Result<(), HostError> {
    let request = format!("CONNECT {host}:{port} HTTP/1.1\r\nhost: {host}:{port}\r\n\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| HostError::Unreachable(format!("the proxy refused the connection: {e}")))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Err(HostError::Unreachable("the proxy's answer is too long".into()));
        }
        let n = tcp.read(&mut byte).await.map_err(|e| HostError::Unreachable(format!("the proxy failed: {e}")))?;
        if n == 0 {
            return Err(HostError::Unreachable("the proxy closed the connection".into()));
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(HostError::Unreachable(format!(
            "the proxy refused the tunnel: {}",
            crate::boundary::text::one_line(&status)
        )));
    }
    Ok(())
}

/// Headers the plugin may not set: the host frames the request itself.
fn reserved(name: &HeaderName) -> bool {
    use hyper::header::{CONNECTION, CONTENT_LENGTH, HOST, TE, TRANSFER_ENCODING, UPGRADE};
    [HOST, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION, UPGRADE, TE].contains(name)
}

impl HttpRun {
    async fn send(&self, boundary: &Boundary, request: Request) -> Result<Response, HostError> {
        let policy = &self.policy;
        let mut url = Url::parse(&request.url).map_err(|e| HostError::Invalid(format!("bad URL: {e}")))?;
        check_url(&policy.origins, &url)?;
        let mut method = hyper::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            HostError::Invalid(format!("bad method `{}`", crate::boundary::text::name(&request.method)))
        })?;
        let mut headers = Vec::new();
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HostError::Invalid(format!("bad header name `{}`", crate::boundary::text::name(name))))?;
            if reserved(&name) {
                return Err(HostError::Invalid(format!("header `{name}` is set by the host")));
            }
            let value = HeaderValue::from_str(value)
                .map_err(|_| HostError::Invalid(format!("bad value for header `{name}`")))?;
            headers.push((name, value));
        }
        let cap = boundary.network_timeout();
        let timeout = request.timeout_ms.map_or(cap, |ms| Duration::from_millis(u64::from(ms)).min(cap));
        let body_limit = boundary.max_call_bytes();
        let mut body = Bytes::from(request.body);
        let started = std::time::Instant::now();
        let work = async {
            let mut hops = 0;
            loop {
                let exchange = Exchange {
                    policy,
                    method: method.clone(),
                    url: &url,
                    headers: &headers,
                    body: body.clone(),
                    read_limit: body_limit.saturating_add(TRANSPORT_SLACK),
                    body_limit,
                };
                let received = exchange.run().await?;
                let redirect = matches!(received.status, 301 | 302 | 303 | 307 | 308);
                let Some(location) = received.location.as_deref().filter(|_| redirect && request.follow_redirects)
                else {
                    return Ok((received, url.clone()));
                };
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(HostError::Invalid(format!("redirect refused: more than {MAX_REDIRECTS} redirects")));
                }
                let next = url.join(location).map_err(|e| HostError::Invalid(format!("redirect refused: {e}")))?;
                check_url(&policy.origins, &next).map_err(|e| match e {
                    HostError::Denied(m) => HostError::Denied(format!("redirect refused: {m}")),
                    HostError::Invalid(m) => HostError::Invalid(format!("redirect refused: {m}")),
                    other => other,
                })?;
                // As browsers do: 303, and 301/302 after a POST, continue as
                // GET without a body; credentials stay with their origin.
                if received.status == 303 || (matches!(received.status, 301 | 302) && method == hyper::Method::POST) {
                    method = hyper::Method::GET;
                    body = Bytes::new();
                }
                if next.origin() != url.origin() {
                    headers.retain(|(n, _)| {
                        n != hyper::header::AUTHORIZATION && n != hyper::header::COOKIE && n != "proxy-authorization"
                    });
                }
                url = next;
            }
        };
        let (received, final_url) = tokio::time::timeout(timeout, work).await.map_err(|_| {
            HostError::Timeout(format!(
                "no complete answer from `{}` within {} ms",
                url.origin().ascii_serialization(),
                timeout.as_millis()
            ))
        })??;
        tracing::debug!(
            plugin = %boundary.plugin(),
            origin = %final_url.origin().ascii_serialization(),
            status = received.status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "plugin HTTP request"
        );
        Ok(Response { status: received.status, headers: received.headers, body: received.body })
    }
}

impl Host for CapView<'_, HttpRun> {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, HostError>> {
        self.call("http.send", request.wire_size(), async |http, boundary| Ok(http.send(boundary, request).await)).await
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::capabilities::testing::Run;

    fn origins(entries: &[&str]) -> Vec<AllowedOrigin> {
        entries.iter().map(|e| AllowedOrigin::parse(e).unwrap()).collect()
    }

    fn check(origins: &[AllowedOrigin], url: &str) -> Result<(), HostError> {
        check_url(origins, &Url::parse(url).unwrap())
    }

    #[test]
    fn exact_origins_match_scheme_host_and_port() {
        let allowed = origins(&["https://idp.example.com", "http://127.0.0.1:5556"]);
        assert!(check(&allowed, "https://idp.example.com/token").is_ok());
        assert!(check(&allowed, "https://IDP.Example.COM:443/x").is_ok());
        assert!(check(&allowed, "http://127.0.0.1:5556/").is_ok());
        assert!(matches!(check(&allowed, "http://idp.example.com/"), Err(HostError::Denied(_))));
        assert!(matches!(check(&allowed, "https://idp.example.com:8443/"), Err(HostError::Denied(_))));
        assert!(matches!(check(&allowed, "https://idp.example.com.evil.net/"), Err(HostError::Denied(_))));
        assert!(matches!(check(&allowed, "https://localhost:5556/"), Err(HostError::Denied(_))));
        assert!(matches!(check(&allowed, "http://[::1]:5556/"), Err(HostError::Denied(_))));
    }

    #[test]
    fn host_tricks_are_refused() {
        let allowed = origins(&["https://idp.example.com"]);
        assert!(matches!(check(&allowed, "https://idp.example.com@evil.net/"), Err(HostError::Invalid(_))));
        assert!(matches!(check(&allowed, "https://idp.example.com./"), Err(HostError::Denied(_))));
        assert!(matches!(check(&allowed, "file:///etc/passwd"), Err(HostError::Invalid(_))));
        // 2130706433 is 127.0.0.1: the parser normalises it, and it is not allowed.
        assert!(matches!(check(&allowed, "https://2130706433/"), Err(HostError::Denied(_))));
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        let allowed = origins(&["https://*.example.com"]);
        assert!(check(&allowed, "https://a.example.com/").is_ok());
        assert!(check(&allowed, "https://a.b.example.com/").is_ok());
        assert!(check(&allowed, "https://example.com/").is_err());
        assert!(check(&allowed, "https://badexample.com/").is_err());
    }

    #[test]
    fn malformed_grants_are_rejected() {
        for entry in ["idp.example.com", "ftp://x", "https://x/path", "https://u@x", "https://x."] {
            assert!(AllowedOrigin::parse(entry).is_err(), "{entry}");
        }
    }

    #[test]
    fn plain_http_beyond_loopback_needs_its_own_grant() {
        let tls = || Arc::new(TlsPolicy::default());
        for local in ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:2"] {
            assert!(HttpPolicy::new(&[local.into()], false, None, tls()).is_ok(), "{local}");
        }
        let refused = HttpPolicy::new(&["http://api.corp.example".into()], false, None, tls()).unwrap_err().to_string();
        assert!(
            refused.contains("plain HTTP to a host that is not loopback") && refused.contains("http-allow-plaintext")
        );
        assert!(HttpPolicy::new(&["http://api.corp.example".into()], true, None, tls()).is_ok());
        assert!(HttpPolicy::new(&[], false, Some("https://proxy:3128"), tls()).is_err());
    }

    /// A server on 127.0.0.1 that answers every connection with `answer`
    /// (called with the stream), on a thread of its own.
    fn serve(answer: impl Fn(std::net::TcpStream) + Send + Sync + 'static) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let answer = Arc::clone(&answer);
                std::thread::spawn(move || answer(stream));
            }
        });
        origin
    }

    fn read_head(stream: &mut std::net::TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    fn get(url: &str) -> Request {
        Request {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
            follow_redirects: true,
        }
    }

    #[tokio::test]
    async fn requests_reach_allowlisted_origins_and_follow_checked_redirects() {
        let origin = serve(|mut stream| {
            let head = read_head(&mut stream);
            let answer = if head.starts_with("GET /start") {
                "HTTP/1.1 302 Found\r\nlocation: /end\r\ncontent-length: 0\r\n\r\n".to_string()
            } else if head.starts_with("GET /away") {
                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.2:9/\r\ncontent-length: 0\r\n\r\n".to_string()
            } else {
                let agent = head.lines().any(|l| l.eq_ignore_ascii_case("user-agent: credbroker/0.1.0"));
                format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-agent: {agent}\r\n\r\nok")
            };
            let _ = stream.write_all(answer.as_bytes());
        });
        let mut run = Run::builder().grants(&format!("http = [{origin:?}]")).build();
        let mut view = run.view::<Http>();
        let response = view.send(get(&format!("{origin}/start"))).await.unwrap().unwrap();
        assert_eq!((response.status, response.body.as_slice()), (200, &b"ok"[..]));
        assert!(response.headers.iter().any(|(k, v)| k == "x-agent" && v == "true"), "{:?}", response.headers);
        let refused = view.send(get(&format!("{origin}/away"))).await.unwrap().unwrap_err();
        assert!(matches!(&refused, HostError::Denied(m) if m.starts_with("redirect refused:")), "{refused:?}");
        let denied = view.send(get("http://127.0.0.3:1/")).await.unwrap().unwrap_err();
        assert!(matches!(denied, HostError::Denied(_)));
    }

    #[tokio::test]
    async fn endless_informational_answers_and_huge_bodies_are_cut_off() {
        let origin = serve(|mut stream| {
            let head = read_head(&mut stream);
            if head.starts_with("GET /continue") {
                while stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_ok() {}
            } else if head.starts_with("GET /headers") {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n");
                for i in 0..2000 {
                    let _ = stream.write_all(format!("x-filler-{i}: {}\r\n", "h".repeat(40)).as_bytes());
                }
                let _ = stream.write_all(b"\r\n");
            } else {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n");
                let _ = stream.write_all(&[b'x'; 100_000]);
            }
        });
        let mut run =
            Run::builder().grants(&format!("http = [{origin:?}]")).limits(|l| l.max_call_bytes = 10_000).build();
        let mut view = run.view::<Http>();
        let started = std::time::Instant::now();
        let endless = view.send(get(&format!("{origin}/continue"))).await.unwrap().unwrap_err();
        assert!(
            matches!(&endless, HostError::Invalid(m) if m.contains("sent more than the request may read")),
            "{endless:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "cut off at once: {:?}", started.elapsed());
        let huge = view.send(get(&format!("{origin}/big"))).await.unwrap().unwrap_err();
        assert!(matches!(&huge, HostError::Invalid(m) if m.contains("max-call-bytes")), "{huge:?}");
        // 100 KB of response headers against a 10 KB call limit.
        let headers = view.send(get(&format!("{origin}/headers"))).await.unwrap().unwrap_err();
        assert!(matches!(&headers, HostError::Invalid(_) | HostError::Unreachable(_)), "{headers:?}");
    }

    #[tokio::test]
    async fn requests_over_the_call_limit_are_refused_before_sending() {
        let mut run =
            Run::builder().grants("http = [\"http://127.0.0.1:9\"]").limits(|l| l.max_call_bytes = 100).build();
        let mut request = get("http://127.0.0.1:9/");
        request.headers.push(("x-big".into(), "v".repeat(200)));
        let refused = run.view::<Http>().send(request).await.unwrap().unwrap_err();
        assert!(matches!(&refused, HostError::Invalid(m) if m.contains("`http.send`")), "{refused:?}");
    }
}
