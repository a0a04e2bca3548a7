//! Outbound HTTP(S), performed by the host for URLs in the plugin's allowlist.
//!
//! ```no_run
//! # fn main() -> Result<(), credbroker_sdk::Error> {
//! use credbroker_sdk::http;
//! let discovery = http::get("https://idp.example.com/.well-known/openid-configuration")?;
//! let form = http::Request::post("https://idp.example.com/token")
//!     .form(&[("grant_type", "client_credentials")])
//!     .send()?;
//! # Ok(()) }
//! ```

use crate::bindings::credbroker::plugin::http as host;
use crate::{Error, HostError};

/// An HTTP response: any status is a response, not an error.
pub type Response = host::Response;

/// Fetch `url` with GET.
///
/// # Errors
///
/// [`HostError::Denied`] when `url` is not allowlisted for this plugin;
/// [`HostError::Unreachable`] or [`HostError::Timeout`] when the server fails.
pub fn get(url: &str) -> Result<Response, HostError> {
    Request::get(url).send()
}

/// An HTTP request under construction.
#[derive(Debug, Clone)]
pub struct Request {
    inner: host::Request,
}

impl Request {
    /// A request with `method` to `url`.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            inner: host::Request {
                method: method.to_string(),
                url: url.to_string(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: None,
                follow_redirects: false,
            },
        }
    }

    /// A GET request.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A POST request.
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.inner.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Set the raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.inner.body = body.into();
        self
    }

    /// Set an `application/x-www-form-urlencoded` body.
    pub fn form(self, fields: &[(&str, &str)]) -> Self {
        let body =
            fields.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect::<Vec<_>>().join("&");
        self.header("content-type", "application/x-www-form-urlencoded").body(body)
    }

    /// Set a JSON body (already serialised).
    pub fn json(self, json: &str) -> Self {
        self.header("content-type", "application/json").body(json.as_bytes())
    }

    /// Give up after `millis` milliseconds (capped by the host's limit).
    pub fn timeout_ms(mut self, millis: u32) -> Self {
        self.inner.timeout_ms = Some(millis);
        self
    }

    /// Follow redirects; every hop must be allowlisted too.
    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.inner.follow_redirects = follow;
        self
    }

    /// Send the request.
    ///
    /// # Errors
    ///
    /// See [`get`].
    pub fn send(&self) -> Result<Response, HostError> {
        host::send(&self.inner)
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// [`Error::Failed`] when the body is not UTF-8.
    pub fn text(&self) -> Result<String, Error> {
        String::from_utf8(self.body.clone()).map_err(|_| Error::failed("response body is not UTF-8"))
    }
}

/// Percent-encode `value` for `application/x-www-form-urlencoded`.
pub fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::form_encode;

    #[test]
    fn form_encoding_escapes_reserved_bytes() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
