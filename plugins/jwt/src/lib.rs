//! The `jwt` validator: bearer tokens that are JWTs from OpenID Connect
//! issuers, decided as kube-apiserver's JWT authenticator decides them,
//! inside the sandbox.
//!
//! Configure it either way:
//!
//! - `authentication-config`: kube-apiserver's AuthenticationConfiguration
//!   (`apiserver.config.k8s.io/v1` or `v1beta1`), the file itself, usually as
//!   `file:/etc/kubernetes/authn.yaml`: every `jwt` issuer with its audiences,
//!   discovery URL, claim validation rules, claim mappings (claims, prefixes,
//!   CEL) and user validation rules ([`authn_config`]).
//! - The flat settings of one issuer: `issuer` (required; the tokens' `iss`,
//!   a trailing `/` aside), `audiences` (required, comma-separated),
//!   `clock-skew-seconds` (60, for `exp`, `nbf` and `iat`), `username-claim`
//!   (`sub`) and `username-prefix`, `groups-claim` (`groups`) and
//!   `groups-prefix`, `uid-claim` (`sub`), `extra:KEY` (a claim whose values
//!   become extra attribute KEY), `required-claims` (`claim=value,...`; a list
//!   claim holding the value counts), `claim-validation-rules` (a JSON list of
//!   `{"expression", "message"}`), and `username-expression`,
//!   `groups-expression`, `uid-expression` (CEL; with `username-expression` the
//!   user comes from the expressions alone).
//!
//! Both: `algorithms` (the file's default is kube-apiserver's RS/PS/ES set,
//! the flat settings' `RS256,ES256,EdDSA`; `none` and HMAC are never
//! accepted), `jwks-cache-seconds` (3600), `jwks-min-refresh-seconds` (60),
//! `distributed-claims-cache-seconds` (300), and `granted-ca` (the PEM bundle
//! `grants.ca-file` names, as `file:<path>`, against which the file's
//! `certificateAuthority` fields are checked). An unknown setting is an error.
//!
//! Everything is parsed, validated and compiled once per load in `setup`
//! (`serve --check`, start-up, reloads) and kept read-only in a static; a
//! review reads it. Signatures are checked by the host (`crypto`); keys and
//! distributed claims are cached in the validator's state.

mod authn_config;
mod cel;
mod distributed;
mod host;
mod jwks;
mod mapping;
mod review;
mod settings;
mod token;
mod validation;

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use credbroker_sdk::{Error, ReviewOutcome, TokenReview, Validator};

use crate::host::Sandbox;
use crate::review::Authenticator;

/// The validator compiled from its settings: built by `setup`, read by every review.
static COMPILED: OnceLock<Authenticator> = OnceLock::new();

/// The compiled validator, built now when `setup` has not run (a host before
/// contract 0.1.3).
fn compiled() -> Result<&'static Authenticator, Error> {
    if let Some(authenticator) = COMPILED.get() {
        return Ok(authenticator);
    }
    let authenticator = settings::load(&Sandbox)?;
    Ok(COMPILED.get_or_init(|| authenticator))
}

struct Jwt;

impl Validator for Jwt {
    fn setup() -> Result<(), Error> {
        compiled().map(|_| ())
    }

    fn validate(review: TokenReview) -> Result<ReviewOutcome, Error> {
        compiled()?.review(&Sandbox, &review.token)
    }
}

credbroker_sdk::export_validator!(Jwt);
