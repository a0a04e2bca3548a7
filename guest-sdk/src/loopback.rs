//! Receive one OAuth redirect on 127.0.0.1, for the authorization-code flow.
//!
//! ```no_run
//! # fn main() -> Result<(), credbroker_sdk::HostError> {
//! let listener = credbroker_sdk::loopback::RedirectListener::listen()?;
//! let redirect_uri = listener.redirect_uri();
//! let url = format!("https://idp.example/authorize?redirect_uri={redirect_uri}&...");
//! let query = listener.wait(&url, 300_000)?; // "code=...&state=..."
//! # Ok(()) }
//! ```

use crate::HostError;
use crate::bindings::credbroker::plugin::loopback as host;

/// A loopback listener waiting for one redirect.
pub struct RedirectListener {
    inner: host::RedirectListener,
}

impl RedirectListener {
    /// Listen on a loopback port.
    ///
    /// # Errors
    ///
    /// [`HostError::Denied`] unless the operator granted `redirect-listener`.
    pub fn listen() -> Result<Self, HostError> {
        host::listen().map(|inner| Self { inner })
    }

    /// The redirect URI for the authorization request.
    pub fn redirect_uri(&self) -> String {
        self.inner.redirect_uri()
    }

    /// Show `authorization_url` to the user and wait up to `timeout_ms` for the
    /// browser to come back; returns the redirect's query string.
    ///
    /// # Errors
    ///
    /// [`HostError::Timeout`] when nobody completes the login in time.
    pub fn wait(&self, authorization_url: &str, timeout_ms: u32) -> Result<String, HostError> {
        self.inner.wait(authorization_url, timeout_ms)
    }
}

/// The value of `name` in a URL query string (percent-decoded).
pub fn query_value(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::query_value;

    #[test]
    fn query_values_are_decoded() {
        let query = "code=abc%2Fdef&state=x+y&empty=&bad=%zz";
        assert_eq!(query_value(query, "code").as_deref(), Some("abc/def"));
        assert_eq!(query_value(query, "state").as_deref(), Some("x y"));
        assert_eq!(query_value(query, "empty").as_deref(), Some(""));
        assert_eq!(query_value(query, "bad").as_deref(), Some("%zz"));
        assert_eq!(query_value(query, "missing"), None);
    }
}
