//! `http`: outbound HTTP(S) performed by the host, limited to the origins the
//! operator allowlisted for the plugin, on every hop of every redirect.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use url::Url;

use super::{GrantError, PluginContext};
use crate::runtime::bindings::http::{Host, Request, Response};
use crate::runtime::bindings::types::HostError;

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

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

impl AllowedOrigin {
    fn parse(entry: &str) -> Result<Self, GrantError> {
        let bad = |reason: &str| GrantError::BadOrigin { entry: entry.to_string(), reason: reason.to_string() };
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

/// The error a redirect to a non-allowlisted URL aborts the request with.
#[derive(Debug)]
struct RedirectDenied(HostError);

impl std::fmt::Display for RedirectDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            HostError::Denied(m) | HostError::Invalid(m) => write!(f, "redirect refused: {m}"),
            other => write!(f, "redirect refused: {other:?}"),
        }
    }
}

impl std::error::Error for RedirectDenied {}

/// One plugin's HTTP policy and its lazily built clients.
#[derive(Debug)]
pub struct HttpPolicy {
    origins: Arc<Vec<AllowedOrigin>>,
    ca_file: Option<PathBuf>,
    /// Clients are built on first use: most runs of most plugins never make a
    /// request, and loading root certificates costs milliseconds.
    following: OnceLock<Result<reqwest::Client, String>>,
    not_following: OnceLock<Result<reqwest::Client, String>>,
}

impl HttpPolicy {
    /// Check the operator's origins.
    ///
    /// # Errors
    ///
    /// [`GrantError::BadOrigin`] for the first malformed entry.
    pub fn new(entries: &[String], ca_file: Option<PathBuf>) -> Result<Self, GrantError> {
        let origins = entries.iter().map(|e| AllowedOrigin::parse(e)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { origins: Arc::new(origins), ca_file, following: OnceLock::new(), not_following: OnceLock::new() })
    }

    /// Allows nothing.
    pub fn deny_all() -> Self {
        Self {
            origins: Arc::new(Vec::new()),
            ca_file: None,
            following: OnceLock::new(),
            not_following: OnceLock::new(),
        }
    }

    fn client(&self, follow_redirects: bool) -> Result<reqwest::Client, HostError> {
        let slot = if follow_redirects { &self.following } else { &self.not_following };
        slot.get_or_init(|| self.build_client(follow_redirects)).clone().map_err(HostError::Unreachable)
    }

    fn build_client(&self, follow_redirects: bool) -> Result<reqwest::Client, String> {
        let tls = tls_config(self.ca_file.as_deref())?;
        let redirect = if follow_redirects {
            let origins = Arc::clone(&self.origins);
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt
                        .error(RedirectDenied(HostError::Invalid(format!("more than {MAX_REDIRECTS} redirects"))));
                }
                match check_url(&origins, attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(e) => attempt.error(RedirectDenied(e)),
                }
            })
        } else {
            reqwest::redirect::Policy::none()
        };
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(redirect)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("credbroker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up HTTP: {e}"))
    }
}

/// The TLS client configuration of a plugin: the operator's CA bundle when given, else the
/// system's.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read CA file `{}`: {e}", path.display()))?;
            let mut reader = std::io::BufReader::new(pem.as_slice());
            for cert in rustls_pemfile::certs(&mut reader) {
                let cert = cert.map_err(|e| format!("CA file `{}`: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("CA file `{}`: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("CA file `{}` holds no certificates", path.display()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // Skip the odd unparsable system certificate rather than fail.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn classify(error: &reqwest::Error) -> HostError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(RedirectDenied(inner)) = e.downcast_ref::<RedirectDenied>() {
            return match inner {
                HostError::Denied(m) => HostError::Denied(format!("redirect refused: {m}")),
                HostError::Invalid(m) => HostError::Invalid(format!("redirect refused: {m}")),
                other => other.clone(),
            };
        }
        source = e.source();
    }
    let detail = error_chain(error);
    if error.is_timeout() {
        HostError::Timeout(detail)
    } else if error.is_builder() {
        HostError::Invalid(detail)
    } else {
        HostError::Unreachable(detail)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

impl PluginContext {
    async fn http_send(&mut self, request: Request) -> Result<Response, HostError> {
        let size = request.url.len()
            + request.body.len()
            + request.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        self.check_call_size("request", size)?;
        let url = Url::parse(&request.url).map_err(|e| HostError::Invalid(format!("bad URL: {e}")))?;
        check_url(&self.policy.http.origins, &url)?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HostError::Invalid(format!("bad method `{}`", request.method)))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &request.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HostError::Invalid(format!("bad header name `{name}`")))?;
            if name == reqwest::header::HOST || name == reqwest::header::CONTENT_LENGTH {
                return Err(HostError::Invalid(format!("header `{name}` is set by the host")));
            }
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| HostError::Invalid(format!("bad value for header `{name}`")))?;
            headers.append(name, value);
        }
        let cap = Duration::from_millis(self.limits.network_timeout_ms);
        let timeout = request.timeout_ms.map_or(cap, |ms| Duration::from_millis(u64::from(ms)).min(cap));
        let client = self.policy.http.client(request.follow_redirects)?;
        let started = std::time::Instant::now();
        let mut response = client
            .request(method, url.clone())
            .headers(headers)
            .body(request.body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let response_headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let limit = self.limits.max_call_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(HostError::Invalid(format!(
                    "the response body exceeds the per-call limit of {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        tracing::debug!(
            plugin = %self.plugin,
            origin = %url.origin().ascii_serialization(),
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "plugin HTTP request"
        );
        Ok(Response { status, headers: response_headers, body })
    }
}

impl Host for PluginContext {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, HostError>> {
        Ok(self.http_send(request).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
