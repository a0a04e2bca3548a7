//! Outbound HTTP(S), performed by the host for URLs in the plugin's allowlist.
//!
//! ```no_run
//! # fn main() -> Result<(), credbroker_sdk::Error> {
//! use credbroker_sdk::http;
//!
//! // A GET with a query string, its status checked, its JSON body read into a type.
//! #[derive(serde::Deserialize)]
//! struct User {
//!     name: String,
//!     groups: Vec<String>,
//! }
//! let user: User = http::Request::get("https://directory.corp.example/v1/users")
//!     .query(&[("name", "ada lovelace")]) // ?name=ada+lovelace
//!     .send()?
//!     .error_for_status()? // 401/403: denied, 429: throttled, 5xx: unavailable
//!     .json()?;
//!
//! // A form POST, as OAuth token endpoints take it.
//! let token = http::Request::post("https://idp.example.com/token")
//!     .basic_auth("client-id", "client-secret")
//!     .form(&[("grant_type", "client_credentials")])
//!     .send()?;
//! # Ok(()) }
//! ```
//!
//! Every request is checked by the host against the origins the operator
//! granted (`grants.http`), on every redirect hop too. Plain `http://` is for
//! loopback addresses; to any other host it needs an explicit grant (see the
//! plugin guide), because settings such as API keys would travel in the clear.

use crate::bindings::credbroker::plugin::http as host;
use crate::{Error, HostError};

/// An HTTP response: any status is a response, not an error (see
/// [`Response::error_for_status`]).
pub use host::Response;

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
    /// Why the body could not be built (reported by [`Request::send`]).
    invalid: Option<String>,
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
            invalid: None,
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

    /// Add `pairs` to the URL's query string, percent-encoded
    /// (`application/x-www-form-urlencoded`), after any query it has.
    pub fn query(mut self, pairs: &[(&str, &str)]) -> Self {
        self.inner.url = with_query(&self.inner.url, pairs);
        self
    }

    /// `Authorization: Basic` with `username` and `password` (RFC 7617).
    /// OAuth client credentials are form-encoded first (RFC 6749, 2.3.1):
    /// `basic_auth(&form_encode(id), &form_encode(secret))`.
    pub fn basic_auth(self, username: &str, password: &str) -> Self {
        use base64::Engine as _;
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        self.header("authorization", &format!("Basic {credentials}"))
    }

    /// `Authorization: Bearer token`.
    pub fn bearer_auth(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Set the raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.inner.body = body.into();
        self
    }

    /// Set an `application/x-www-form-urlencoded` body.
    pub fn form(self, fields: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        self.header("content-type", "application/x-www-form-urlencoded").body(body)
    }

    /// Set a JSON body: `body` serialised with serde (feature `json`, on by
    /// default), with `content-type: application/json`. For JSON text you
    /// already have, use [`Request::body`] and the header.
    ///
    /// A value serde cannot serialise (a map with non-string keys) makes
    /// [`Request::send`] fail with [`HostError::Invalid`].
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.inner.body = bytes,
            Err(error) => self.invalid = Some(format!("the JSON body cannot be serialised: {error}")),
        }
        self.header("content-type", "application/json")
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
    /// See [`get`]; [`HostError::Invalid`] also for a body [`Request::json`]
    /// could not serialise.
    pub fn send(&self) -> Result<Response, HostError> {
        if let Some(why) = &self.invalid {
            return Err(HostError::Invalid(why.clone()));
        }
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

    /// This response if its status is 2xx, otherwise the error a plugin
    /// should report for it, so that the host answers as the status means:
    ///
    /// | status | error | `credbroker serve` answers |
    /// | --- | --- | --- |
    /// | 401, 403 | [`Error::Denied`] | a denial |
    /// | 429 | [`Error::Throttled`] (with `Retry-After`, when sent) | 429, retried |
    /// | 408, 5xx | [`Error::Unavailable`] | 503, retried |
    /// | any other | [`Error::Failed`] | a denial |
    ///
    /// The message names the status, never the body (it may hold secrets).
    /// A timeout or an unreachable server is already an error of
    /// [`Request::send`], which `?` turns into [`Error::Unavailable`].
    ///
    /// # Errors
    ///
    /// As in the table, for every status outside 200–299.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if self.is_success() {
            return Ok(self);
        }
        let status = self.status;
        let described = match reason_phrase(status) {
            Some(reason) => format!("the server answered HTTP {status} ({reason})"),
            None => format!("the server answered HTTP {status}"),
        };
        Err(match status {
            401 | 403 => Error::denied(described),
            429 => match self.header("retry-after").map(str::trim).filter(|v| is_retry_after(v)) {
                Some(after) if after.bytes().all(|b| b.is_ascii_digit()) => {
                    Error::throttled(format!("{described}; retry after {after} s"))
                }
                Some(after) => Error::throttled(format!("{described}; retry after {after}")),
                None => Error::throttled(described),
            },
            408 | 500..=599 => Error::unavailable(described),
            _ => Error::failed(described),
        })
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// [`Error::Failed`] when the body is not UTF-8.
    pub fn text(&self) -> Result<String, Error> {
        String::from_utf8(self.body.clone()).map_err(|_| Error::failed("response body is not UTF-8"))
    }

    /// The body parsed as JSON into `T` (feature `json`, on by default).
    /// Check the status first ([`Response::error_for_status`]): an error
    /// answer rarely has the shape of a success.
    ///
    /// # Errors
    ///
    /// [`Error::Failed`] when the body is not JSON of `T`'s shape. The message
    /// says where and, for a missing field, which; it never quotes the body
    /// (it may hold secrets).
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|error| Error::failed(describe_json_error(&error)))
    }
}

/// `url` with `pairs` appended to its query string (percent-encoded, as
/// `application/x-www-form-urlencoded`), before any `#fragment`.
///
/// ```no_run
/// use credbroker_sdk::http::with_query;
/// assert_eq!(with_query("https://idp/authorize", &[("scope", "openid email")]),
///            "https://idp/authorize?scope=openid+email");
/// assert_eq!(with_query("https://idp/authorize?x=1#top", &[("state", "a&b")]),
///            "https://idp/authorize?x=1&state=a%26b#top");
/// ```
pub fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return url.to_string();
    }
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let separator = match base.split_once('?') {
        None => "?",
        Some((_, "")) => "",
        Some((_, existing)) if existing.ends_with('&') => "",
        Some(_) => "&",
    };
    let mut out = format!("{base}{separator}{query}");
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// Percent-encode `value` for `application/x-www-form-urlencoded`.
pub fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Whether `value` is a `Retry-After` worth quoting: delay seconds or an
/// HTTP date (short, printable ASCII), not arbitrary text from the server.
fn is_retry_after(value: &str) -> bool {
    !value.is_empty() && value.len() <= 40 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b" ,:".contains(&b))
}

/// The reason phrase of the statuses plugins meet most.
fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

/// A serde_json error without the values it may quote from the body.
#[cfg(feature = "json")]
fn describe_json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("line {} column {}", error.line(), error.column());
    match error.classify() {
        Category::Io => "the response body could not be read".to_string(),
        Category::Syntax => format!("the response body is not valid JSON (at {at})"),
        Category::Eof => "the response body is not valid JSON (it ends early)".to_string(),
        Category::Data => {
            // serde's words for a missing or repeated field name only the
            // field; its other data errors quote the offending value.
            let message = error.to_string();
            if message.starts_with("missing field `") || message.starts_with("duplicate field `") {
                let detail = message.split(" at line ").next().unwrap_or_default();
                format!("the response body lacks what is expected: {detail}")
            } else {
                format!("the response body has a value of the wrong type or form at {at}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn form_encoding_escapes_reserved_bytes() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn forms_and_queries_are_encoded_alike() {
        let request = Request::post("https://x/token").form(&[("a", "1 2"), ("b", "&=")]);
        assert_eq!(request.inner.body, b"a=1+2&b=%26%3D");
        assert_eq!(Request::get("https://x/u").query(&[("name", "ada l")]).inner.url, "https://x/u?name=ada+l");
        assert_eq!(with_query("https://x/u?", &[("a", "b")]), "https://x/u?a=b");
        assert_eq!(with_query("https://x/u?a=1&", &[("b", "2")]), "https://x/u?a=1&b=2");
        assert_eq!(with_query("https://x/u#f", &[("a", "#")]), "https://x/u?a=%23#f");
        assert_eq!(with_query("https://x/u", &[]), "https://x/u");
        // with_query's doc example
        assert_eq!(
            with_query("https://idp/authorize", &[("scope", "openid email")]),
            "https://idp/authorize?scope=openid+email"
        );
        assert_eq!(
            with_query("https://idp/authorize?x=1#top", &[("state", "a&b")]),
            "https://idp/authorize?x=1&state=a%26b#top"
        );
    }

    #[test]
    fn authorization_headers() {
        let request = Request::get("https://x/").basic_auth("client", "secret").bearer_auth("t0k");
        assert_eq!(
            request.inner.headers,
            [
                ("authorization".to_string(), "Basic Y2xpZW50OnNlY3JldA==".to_string()),
                ("authorization".to_string(), "Bearer t0k".to_string())
            ]
        );
    }

    #[test]
    fn statuses_become_the_errors_the_host_understands() {
        assert!(response(204, &[], "").error_for_status().is_ok());
        let error =
            |status, headers: &[(&str, &str)]| response(status, headers, "secret body").error_for_status().unwrap_err();
        assert_eq!(error(401, &[]), Error::Denied("the server answered HTTP 401 (Unauthorized)".into()));
        assert!(matches!(error(403, &[]), Error::Denied(_)));
        assert_eq!(
            error(429, &[("Retry-After", "30")]),
            Error::Throttled("the server answered HTTP 429 (Too Many Requests); retry after 30 s".into())
        );
        assert_eq!(
            error(429, &[("retry-after", "\u{1b}[2J")]).message(),
            "the server answered HTTP 429 (Too Many Requests)"
        );
        assert_eq!(error(503, &[]), Error::Unavailable("the server answered HTTP 503 (Service Unavailable)".into()));
        assert!(matches!(error(599, &[]), Error::Unavailable(_)));
        assert!(matches!(error(408, &[]), Error::Unavailable(_)));
        assert_eq!(error(404, &[]), Error::Failed("the server answered HTTP 404 (Not Found)".into()));
        assert_eq!(error(302, &[]).message(), "the server answered HTTP 302 (Found)");
        assert_eq!(error(418, &[]).message(), "the server answered HTTP 418");
        for status in [401, 404, 429, 500] {
            assert!(!error(status, &[]).message().contains("secret"), "the body is never quoted");
        }
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_bodies_both_ways() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Answer {
            token: String,
            expires_in: i64,
        }
        let request = Request::post("https://x/").json(&serde_json::json!({ "user": "a\"b" }));
        assert_eq!(request.inner.body, br#"{"user":"a\"b"}"#, "a quote in a value stays inside the string");
        assert!(request.inner.headers.contains(&("content-type".into(), "application/json".into())));

        let ok = response(200, &[], r#"{"token":"t","expires_in":60}"#);
        assert_eq!(ok.json::<Answer>().unwrap(), Answer { token: "t".into(), expires_in: 60 });
        let missing = response(200, &[], r#"{"token":"t"}"#).json::<Answer>().unwrap_err();
        assert_eq!(
            missing,
            Error::Failed("the response body lacks what is expected: missing field `expires_in`".into())
        );
        let wrong = response(200, &[], r#"{"token":"s3cret-value","expires_in":"soon"}"#).json::<Answer>().unwrap_err();
        assert_eq!(wrong.message(), "the response body has a value of the wrong type or form at line 1 column 43");
        let quoted = response(200, &[], r#"{"token":12345678,"expires_in":1}"#).json::<Answer>().unwrap_err();
        assert!(!quoted.message().contains("12345678"), "{quoted:?}");
        let syntax = response(200, &[], "<html>s3cret</html>").json::<Answer>().unwrap_err();
        assert_eq!(syntax.message(), "the response body is not valid JSON (at line 1 column 1)");
        let short = response(200, &[], r#"{"token":"#).json::<Answer>().unwrap_err();
        assert_eq!(short.message(), "the response body is not valid JSON (it ends early)");

        // serde cannot serialise a map with non-string keys: `send` says so.
        let keys: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(
            Request::post("https://x/").json(&keys).invalid.unwrap().starts_with("the JSON body cannot be serialised")
        );
    }
}
