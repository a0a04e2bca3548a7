//! The credbroker plugin SDK: write a credential provider, a token validator
//! or a login backend in a few lines of Rust, compile it for `wasm32-wasip2`,
//! and credbroker runs it in its sandbox.
//!
//! A plugin is a `cdylib` crate. It implements [`Provider`] (for `credbroker get`,
//! the kubectl exec plugin) or [`Validator`] (for `credbroker serve`, the webhook)
//! and exports it with [`export_provider!`] or [`export_validator!`]; a login
//! backend for broker-issued tokens implements [`Login`] ([`export_login!`]).
//! Everything from outside the sandbox comes through the capability modules:
//! [`config`], [`log`], [`prompt`], [`http`], [`files`], [`ldap`], [`state`],
//! [`loopback`], [`crypto`], [`credential_process`], [`table`]. The operator grants them per plugin; a call the
//! policy does not allow returns [`HostError::Denied`]. The types a plugin
//! receives and returns ([`CredentialRequest`], [`TokenReview`],
//! [`ReviewOutcome`], [`UserInfo`], [`http::Response`], ...) are the
//! contract's, documented field by field from its WIT.
//!
//! `credbroker plugin new NAME --world provider|validator|login` writes a
//! crate that builds and tests as written; the plugin guide
//! (`docs/plugin-guide.md`) covers the rest.
//!
//! # A complete provider
//!
//! ```no_run
//! use credbroker_sdk::{config, http, log, Credential, CredentialRequest, Error, Provider};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize)]
//! struct TokenRequest<'a> {
//!     cluster: Option<&'a str>,
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! struct TokenAnswer {
//!     token: String,
//!     expires_in: i64,
//! }
//!
//! struct Vault;
//!
//! impl Provider for Vault {
//!     fn get_credential(request: CredentialRequest) -> Result<Credential, Error> {
//!         let url = config::require("url")?;
//!         let api_key = config::require_secret("api-key")?;
//!         let cluster = request.cluster.as_ref().map(|c| c.server.as_str());
//!         let answer: TokenAnswer = http::Request::post(&format!("{url}/v1/kubernetes/token"))
//!             .bearer_auth(&api_key)
//!             .json(&TokenRequest { cluster })     // serialised by serde: any value is safe in it
//!             .send()?
//!             .error_for_status()?                 // 401/403 denied, 429 throttled, 5xx unavailable
//!             .json()?;
//!         log::mark_secret(&answer.token);
//!         Ok(Credential::token(answer.token).expires_in(answer.expires_in))
//!     }
//! }
//!
//! credbroker_sdk::export_provider!(Vault);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and run it with
//! `credbroker get --plugin target/wasm32-wasip2/release/vault.wasm --set url=...`.
//!
//! # Versions
//!
//! [`CONTRACT`] is the contract this SDK is generated from, and what a plugin
//! built with it speaks. The SDK's `MAJOR.MINOR` is the contract's track
//! (`0.1`): within it, both only add. Its patch number is never below the
//! contract's: when the contract adds something (0.1.6), the SDK that offers
//! it is at least 0.1.6; an SDK-only fix takes the next patch number without
//! changing [`CONTRACT`]. credbroker runs plugins built against any contract
//! of its track up to its own.
//!
//! # Features
//!
//! `json` (default): typed JSON bodies with serde, [`http::Request::json`] and
//! [`http::Response::json`].

#[doc(hidden)]
pub mod bindings;

// The README's example compiles (as a doctest).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;

mod types;

pub mod config;
pub mod credential_process;
pub mod crypto;
pub mod files;
pub mod http;
pub mod ldap;
pub mod ldap_filter;
pub mod log;
pub mod loopback;
pub mod prompt;
pub mod state;
pub mod table;

pub use types::now_unix;
pub use types::{
    Authenticated, ClientCertificate, ClusterInfo, Credential, CredentialRequest, CredentialSecret, Error, HostError,
    LoginOutcome, ReviewOutcome, Setting, TokenReview, UserInfo,
};

/// The contract this SDK is generated from (`credbroker:plugin@CONTRACT`):
/// what every plugin built with it speaks. `credbroker plugin inspect` shows
/// it for a built component.
pub const CONTRACT: &str = "0.1.5";

/// A credential provider: what `credbroker get` runs to obtain a credential for
/// kubectl.
pub trait Provider {
    /// Produce a credential for `request`. Called on every `credbroker get` that
    /// misses the token cache, in a fresh sandbox.
    ///
    /// # Errors
    ///
    /// Return [`Error::misconfigured`] for missing or wrong settings,
    /// [`Error::denied`] when the identity backend refuses, and
    /// [`Error::unavailable`] when it cannot be reached.
    fn get_credential(request: CredentialRequest) -> Result<Credential, Error>;
}

/// A token validator: what `credbroker serve` runs to decide whose bearer token
/// the API server is asking about.
///
/// Every review runs in a fresh instance. Work that depends only on the
/// configuration (reading and indexing a file, compiling expressions) belongs
/// in [`Validator::setup`]: the host runs it once per load and every review
/// starts from the instance as `setup` left it. Keep what `setup` builds in a
/// `static` (e.g. a [`std::sync::OnceLock`]), and have `validate` fall back to
/// building it when it is absent, so the plugin also runs on hosts that do not
/// call `setup` (before contract 0.1.3).
pub trait Validator {
    /// Prepare for reviews, once per load of the configuration (start-up,
    /// every reload, `serve --check`), with the validator's settings and
    /// grants. The default does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::misconfigured`] for settings or files that make no sense: the
    /// load fails with the message, and a reload keeps the previous
    /// configuration serving.
    fn setup() -> Result<(), Error> {
        Ok(())
    }

    /// Decide on `review`. Return [`ReviewOutcome::Rejected`] for a token that is
    /// not valid; reserve errors for faults.
    ///
    /// # Errors
    ///
    /// [`Error::unavailable`] makes the webhook answer with a retryable status,
    /// so use it when a backend is down; other errors deny the review with the
    /// message as `status.error`.
    fn validate(review: TokenReview) -> Result<ReviewOutcome, Error>;
}

/// `bytes` random bytes from the host's secure randomness, base64url-encoded
/// without padding: for OAuth `state`, `nonce` and PKCE verifiers.
pub fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // wasi:random cannot fail; a zeroed buffer would only come from a broken host.
    let _ = getrandom::fill(&mut buffer);
    base64url(&buffer)
}

/// Base64url without padding (JWTs, PKCE).
pub fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A login backend: checks passwords and looks users up for `credbroker serve`,
/// which then issues its own short-lived tokens.
pub trait Login {
    /// Check `password` for `username`.
    ///
    /// # Errors
    ///
    /// [`Error::unavailable`] when the directory cannot be reached (the client
    /// is told to retry); [`Error::misconfigured`] for bad settings. A wrong
    /// password or unknown user is [`LoginOutcome::Rejected`], not an error.
    fn authenticate(username: String, password: String) -> Result<LoginOutcome, Error>;

    /// The user called `username` now, or `None` when gone or disabled.
    ///
    /// # Errors
    ///
    /// As for [`Login::authenticate`].
    fn lookup(username: String) -> Result<Option<UserInfo>, Error>;
}

/// Export a [`Provider`] implementation as this component's `provider` world.
///
/// Use it once, at the crate root of a `cdylib` plugin: `export_provider!(MyProvider);`
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        // Only a wasm build exports anything: native builds of a plugin crate
        // (its unit tests, `cargo clippy`) link without the component glue.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __CredbrokerProvider;
            impl $crate::bindings::provider::exports::credbroker::plugin::credential_provider::Guest
                for __CredbrokerProvider
            {
                fn get_credential(
                    request: $crate::CredentialRequest,
                ) -> ::core::result::Result<$crate::Credential, $crate::Error> {
                    <$provider as $crate::Provider>::get_credential(request)
                }
            }
            $crate::bindings::provider::export_provider_world!(
                __CredbrokerProvider with_types_in $crate::bindings::provider
            );
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn($crate::CredentialRequest) -> ::core::result::Result<$crate::Credential, $crate::Error> =
            <$provider as $crate::Provider>::get_credential;
    };
}

/// Export a [`Validator`] implementation as this component's `validator` world.
///
/// Use it once, at the crate root of a `cdylib` plugin: `export_validator!(MyValidator);`
#[macro_export]
macro_rules! export_validator {
    ($validator:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __CredbrokerValidator;
            impl $crate::bindings::validator::exports::credbroker::plugin::token_validator::Guest
                for __CredbrokerValidator
            {
                fn validate(
                    review: $crate::TokenReview,
                ) -> ::core::result::Result<$crate::ReviewOutcome, $crate::Error> {
                    <$validator as $crate::Validator>::validate(review)
                }
            }
            impl $crate::bindings::validator::exports::credbroker::plugin::validator_setup::Guest
                for __CredbrokerValidator
            {
                fn setup() -> ::core::result::Result<(), $crate::Error> {
                    <$validator as $crate::Validator>::setup()
                }
            }
            $crate::bindings::validator::export_validator_world!(
                __CredbrokerValidator with_types_in $crate::bindings::validator
            );
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn($crate::TokenReview) -> ::core::result::Result<$crate::ReviewOutcome, $crate::Error> =
            <$validator as $crate::Validator>::validate;
    };
}

/// Export a [`Login`] implementation as this component's `login` world.
///
/// Use it once, at the crate root of a `cdylib` plugin: `export_login!(MyDirectory);`
#[macro_export]
macro_rules! export_login {
    ($login:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __CredbrokerLogin;
            impl $crate::bindings::login::exports::credbroker::plugin::password_login::Guest for __CredbrokerLogin {
                fn authenticate(
                    username: ::std::string::String,
                    password: ::std::string::String,
                ) -> ::core::result::Result<$crate::LoginOutcome, $crate::Error> {
                    <$login as $crate::Login>::authenticate(username, password)
                }
                fn lookup(
                    username: ::std::string::String,
                ) -> ::core::result::Result<::core::option::Option<$crate::UserInfo>, $crate::Error> {
                    <$login as $crate::Login>::lookup(username)
                }
            }
    $crate::bindings::login::export_login_world!(__CredbrokerLogin with_types_in $crate::bindings::login);
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(
            ::std::string::String,
            ::std::string::String,
        ) -> ::core::result::Result<$crate::LoginOutcome, $crate::Error> = <$login as $crate::Login>::authenticate;
    };
}

#[cfg(test)]
mod tests {
    /// `MAJOR.MINOR.PATCH` as numbers.
    fn version(text: &str) -> (u64, u64, u64) {
        let numbers: Vec<u64> = text.split('.').map(|n| n.parse().expect("a number")).collect();
        assert_eq!(numbers.len(), 3, "{text} is not MAJOR.MINOR.PATCH");
        (numbers[0], numbers[1], numbers[2])
    }

    /// The SDK moves with the contract it ships (see "Versions" above): a
    /// contract change without an SDK release to match, or an SDK version
    /// off the contract's track, fails here.
    #[test]
    fn the_sdk_version_follows_the_contract() {
        let wit = include_str!("../wit/credbroker.wit");
        let package = wit
            .lines()
            .find_map(|line| line.trim().strip_prefix("package credbroker:plugin@"))
            .expect("the WIT names its package");
        let contract = package.trim_end_matches(';');
        assert_eq!(super::CONTRACT, contract, "CONTRACT must name the WIT's version");
        let (sdk, contract) = (version(env!("CARGO_PKG_VERSION")), version(contract));
        assert_eq!((sdk.0, sdk.1), (contract.0, contract.1), "the SDK's MAJOR.MINOR is the contract's track");
        assert!(sdk.2 >= contract.2, "the SDK {sdk:?} is older than the contract it ships {contract:?}");
    }
}
