//! What the validator needs from outside the sandbox, as one trait: the
//! clock, HTTPS (discovery, JWKS, distributed claims), the validator's state,
//! signature checks and the log. [`Sandbox`] is the real thing, through the
//! SDK's capabilities; the unit tests bring their own (a fake IdP, ring).

use credbroker_sdk::HostError;
use credbroker_sdk::crypto::PublicKey;
use credbroker_sdk::{config, crypto, http, log, state};

/// Longest wait for one request: discovery, a JWKS or a claims endpoint
/// (the host caps it at the plugin's `network-timeout-ms`).
pub const HTTP_TIMEOUT_MS: u32 = 5_000;

/// An HTTP answer: any status is an answer.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The outside world, as the validator sees it.
pub trait Host {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;

    /// `GET url`, with `Authorization: Bearer <bearer>` when given.
    ///
    /// # Errors
    ///
    /// The host's refusal (not allowlisted) or failure (unreachable, timeout).
    fn get(&self, url: &str, bearer: Option<&str>) -> Result<Response, HostError>;

    /// The validator's state under `key`.
    fn load(&self, key: &str) -> Option<Vec<u8>>;

    /// Keep `value` under `key` (shared by every review of this validator).
    ///
    /// # Errors
    ///
    /// The state is full or cannot be written.
    fn store(&self, key: &str, value: &[u8]) -> Result<(), HostError>;

    /// Forget `key`.
    fn forget(&self, key: &str);

    /// Whether `signature` over `message` is valid under `key` with the JOSE
    /// algorithm `algorithm`.
    ///
    /// # Errors
    ///
    /// The key does not suit the algorithm, or it is malformed.
    fn verify(&self, algorithm: &str, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, HostError>;

    /// A debug line for the server log.
    fn debug(&self, message: &str);

    /// A warning for the server log.
    fn warn(&self, message: &str);
}

/// The plugin's settings, as the operator wrote them (resolved by the host).
pub trait Settings {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
    /// Every key that is set.
    fn keys(&self) -> Vec<String>;
}

/// The sandbox's capabilities, through the SDK.
pub struct Sandbox;

impl Host for Sandbox {
    fn now(&self) -> i64 {
        credbroker_sdk::now_unix()
    }

    fn get(&self, url: &str, bearer: Option<&str>) -> Result<Response, HostError> {
        let mut request =
            http::Request::get(url).timeout_ms(HTTP_TIMEOUT_MS).header("accept", "application/json, application/jwt");
        if let Some(bearer) = bearer {
            log::mark_secret(bearer);
            request = request.header("authorization", &format!("Bearer {bearer}"));
        }
        request.send().map(|r| Response { status: r.status, body: r.body })
    }

    fn load(&self, key: &str) -> Option<Vec<u8>> {
        state::get(key)
    }

    fn store(&self, key: &str, value: &[u8]) -> Result<(), HostError> {
        state::set(key, value)
    }

    fn forget(&self, key: &str) {
        // A key that cannot be deleted ages out of the bounded cache instead.
        let _ = state::delete(key);
    }

    fn verify(&self, algorithm: &str, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, HostError> {
        crypto::verify_signature(algorithm, key, message, signature)
    }

    fn debug(&self, message: &str) {
        log::debug(message);
    }

    fn warn(&self, message: &str) {
        log::warn(message);
    }
}

impl Settings for Sandbox {
    fn get(&self, key: &str) -> Option<String> {
        config::get(key)
    }

    fn keys(&self) -> Vec<String> {
        config::keys()
    }
}
