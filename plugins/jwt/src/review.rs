//! The decision on one token, as kube-apiserver's JWT authenticator makes it:
//! the issuer its `iss` names, an algorithm that issuer accepts, a signature
//! by one of its keys, the registered claims, distributed claims, then the
//! user the claims map to ([`crate::mapping`]).

use std::collections::BTreeSet;

use credbroker_sdk::{Error, HostError, ReviewOutcome, UserInfo};
use serde_json::{Map, Value};

use crate::cel::{Cel, Claims, Expression};
use crate::host::Host;
use crate::jwks::{self, Key, Refresh, Source};
use crate::token::{self, Algorithm, Jws, Times};
use crate::{distributed, mapping};

/// Why a review ends without a user.
#[derive(Debug)]
pub enum Stop {
    /// The token is not valid: the API server is told why.
    Reject(String),
    /// A fault: an issuer unreachable (retried), a configuration the issuer contradicts.
    Fail(Error),
}

impl Stop {
    /// A host capability's failure, with what was being done: a refusal by
    /// the grants is the operator's to fix, an unreachable server is retried.
    pub fn host(context: &str, error: &HostError) -> Stop {
        let message = format!("{context}: {}", error.describe());
        Stop::Fail(match error {
            HostError::Denied(_) | HostError::NotInteractive => Error::misconfigured(message),
            HostError::Unreachable(_) | HostError::Timeout(_) => Error::unavailable(message),
            HostError::Invalid(_) => Error::failed(message),
        })
    }
}

/// The validator, compiled from its settings: read-only once built.
pub struct Authenticator {
    pub issuers: Vec<Issuer>,
    pub cel: Cel,
    pub refresh: Refresh,
    /// How long distributed claims are reused at most.
    pub claims_cache_seconds: i64,
}

/// `username`: a claim with a prefix, or an expression.
#[derive(Debug)]
pub enum Username {
    Claim { claim: String, prefix: String },
    Expression(Expression),
}

/// `groups`: none, a claim with a prefix, or an expression.
#[derive(Debug)]
pub enum Groups {
    None,
    Claim { claim: String, prefix: String },
    Expression(Expression),
}

/// `uid`: none, a claim, or an expression.
#[derive(Debug)]
pub enum Uid {
    None,
    Claim(String),
    Expression(Expression),
}

/// An extra attribute and the expression giving its values.
#[derive(Debug)]
pub struct Extra {
    pub key: String,
    pub expression: Expression,
}

/// `claimValidationRules[].claim` with its `requiredValue`.
#[derive(Debug)]
pub struct Required {
    pub claim: String,
    pub value: String,
    /// The flat settings also accept a list claim holding the value.
    pub list_member: bool,
}

/// A validation rule and what to say when it fails.
#[derive(Debug)]
pub struct Rule {
    pub expression: Expression,
    pub message: String,
}

/// One issuer: one `jwt` entry of the AuthenticationConfiguration.
#[derive(Debug)]
pub struct Issuer {
    pub url: String,
    /// The flat settings ignore a trailing `/` in `iss`.
    pub lenient_url: bool,
    pub discovery_url: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub times: Times,
    pub username: Username,
    pub groups: Groups,
    pub uid: Uid,
    pub extra: Vec<Extra>,
    pub required: Vec<Required>,
    pub claim_rules: Vec<Rule>,
    pub user_rules: Vec<Rule>,
    /// Claims resolved from `_claim_sources` when the token does not carry them.
    pub distributed: BTreeSet<String>,
    /// The claims the mappings' and claim rules' expressions read (`None`
    /// without any): the only ones converted for CEL in a review.
    pub cel_claims: Option<Claims>,
}

impl Authenticator {
    /// Decide on `token`.
    ///
    /// # Errors
    ///
    /// Faults only: a rejected token is an `Ok` outcome.
    pub fn review(&self, host: &dyn Host, token: &str) -> Result<ReviewOutcome, Error> {
        match self.decide(host, token) {
            Ok(user) => Ok(ReviewOutcome::authenticated(user)),
            Err(Stop::Reject(reason)) => Ok(ReviewOutcome::rejected(reason)),
            Err(Stop::Fail(error)) => Err(error),
        }
    }

    fn decide(&self, host: &dyn Host, token: &str) -> Result<UserInfo, Stop> {
        let jws = Jws::parse(token).map_err(Stop::Reject)?;
        let iss = jws.untrusted_issuer().ok_or_else(|| Stop::Reject("the token names no issuer (`iss`)".into()))?;
        let issuer = self.issuer(iss).ok_or_else(|| {
            let known: Vec<&str> = self.issuers.iter().map(|i| i.url.as_str()).collect();
            Stop::Reject(format!("the token's issuer {iss:?} is not one this validator accepts ({})", known.join(", ")))
        })?;
        let mut claims = issuer.verify(self, host, jws)?;
        distributed::resolve(self, issuer, host, token, &mut claims)?;
        mapping::user(&self.cel, issuer, &claims)
    }

    /// The issuer whose URL `iss` is.
    pub fn issuer(&self, iss: &str) -> Option<&Issuer> {
        self.issuers.iter().find(|i| {
            if i.lenient_url { i.url.trim_end_matches('/') == iss.trim_end_matches('/') } else { i.url == iss }
        })
    }
}

impl Issuer {
    /// The issuer with [`Issuer::distributed`] and [`Issuer::cel_claims`]
    /// filled in: every claim its mappings and rules read by name.
    pub fn reading_claims(mut self) -> Self {
        let mut names = BTreeSet::new();
        let mut expressions: Vec<&Expression> = Vec::new();
        match &self.username {
            Username::Claim { claim, .. } => drop(names.insert(claim.clone())),
            Username::Expression(e) => expressions.push(e),
        }
        match &self.groups {
            Groups::Claim { claim, .. } => drop(names.insert(claim.clone())),
            Groups::Expression(e) => expressions.push(e),
            Groups::None => {}
        }
        match &self.uid {
            Uid::Claim(claim) => drop(names.insert(claim.clone())),
            Uid::Expression(e) => expressions.push(e),
            Uid::None => {}
        }
        expressions.extend(self.extra.iter().map(|x| &x.expression));
        expressions.extend(self.claim_rules.iter().map(|r| &r.expression));
        names.extend(expressions.iter().flat_map(|e| e.reads.iter().cloned()));
        names.extend(self.required.iter().map(|r| r.claim.clone()));
        self.cel_claims = (!expressions.is_empty()).then(|| Claims::read_by(expressions.iter().copied()));
        self.distributed = names;
        self
    }

    /// Where this issuer's keys come from.
    pub fn source(&self) -> Source<'_> {
        Source { issuer: &self.url, discovery_url: &self.discovery_url, lenient_issuer: self.lenient_url }
    }

    /// Check the algorithm, the signature (with the keys of `keys_of`) and the
    /// registered claims; the claims, once trusted.
    ///
    /// # Errors
    ///
    /// [`Stop::Reject`] for a token that fails a check.
    pub fn verify_with(
        &self,
        validator: &Authenticator,
        host: &dyn Host,
        jws: Jws<'_>,
        keys_of: &Source<'_>,
    ) -> Result<Map<String, Value>, Stop> {
        let algorithm = Algorithm::parse(&jws.alg).map_err(Stop::Reject)?;
        if !self.algorithms.contains(&algorithm) {
            let accepted: Vec<&str> = self.algorithms.iter().map(|a| a.name()).collect();
            return Err(Stop::Reject(format!(
                "the token is signed with {}, which this issuer does not accept (accepted: {})",
                algorithm.name(),
                accepted.join(", ")
            )));
        }
        check_signature(host, keys_of, validator.refresh, &jws, algorithm)?;
        token::check_claims(&jws.claims, &self.audiences, self.times, host.now()).map_err(Stop::Reject)?;
        check_claim_sources(&jws.claims).map_err(Stop::Reject)?;
        Ok(jws.claims)
    }

    fn verify(&self, validator: &Authenticator, host: &dyn Host, jws: Jws<'_>) -> Result<Map<String, Value>, Stop> {
        let source = self.source();
        self.verify_with(validator, host, jws, &source)
    }
}

/// Whether one of `keys` verifies the token's signature.
fn verifies(host: &dyn Host, keys: &[Key], jws: &Jws<'_>, algorithm: Algorithm) -> bool {
    let candidates = keys.iter().filter(|k| {
        k.for_signing
            && k.key.key_type() == algorithm.key_type()
            && k.alg.as_deref().is_none_or(|a| a == algorithm.name())
            && (jws.kid.is_none() || k.kid == jws.kid)
    });
    for key in candidates {
        match host.verify(algorithm.name(), &key.key.public_key(), jws.signed, &jws.signature) {
            Ok(true) => return true,
            Ok(false) => {}
            // A key the host refuses (too short, a bad point) verifies nothing.
            Err(e) => host.debug(&format!("key {:?} cannot check {}: {}", key.kid, algorithm.name(), e.describe())),
        }
    }
    false
}

fn check_signature(
    host: &dyn Host,
    source: &Source<'_>,
    refresh: Refresh,
    jws: &Jws<'_>,
    algorithm: Algorithm,
) -> Result<(), Stop> {
    let mut set = jwks::keys(host, source, refresh, false)?;
    if verifies(host, &set.keys, jws, algorithm) {
        return Ok(());
    }
    // As go-oidc: a token the cached keys do not verify may be signed by a new key.
    if !set.fresh {
        set = jwks::keys(host, source, refresh, true)?;
        if set.fresh && verifies(host, &set.keys, jws, algorithm) {
            return Ok(());
        }
    }
    Err(Stop::Reject(match &jws.kid {
        Some(kid) if !set.keys.iter().any(|k| k.kid.as_ref() == Some(kid)) => {
            format!("unknown key id {kid} (not in the JWKS of {})", source.issuer)
        }
        _ => format!("invalid signature: no {} key of {} verifies it", algorithm.name(), source.issuer),
    }))
}

/// go-oidc's check of distributed claim references: every `_claim_names`
/// entry names a source in `_claim_sources`.
fn check_claim_sources(claims: &Map<String, Value>) -> Result<(), String> {
    let Some(names) = claims.get("_claim_names") else { return Ok(()) };
    let names = names.as_object().ok_or("`_claim_names` is not an object")?;
    let sources = match claims.get("_claim_sources") {
        None => None,
        Some(Value::Object(sources)) => Some(sources),
        Some(_) => return Err("`_claim_sources` is not an object".into()),
    };
    for (claim, source) in names {
        let source = source.as_str().ok_or_else(|| format!("`_claim_names.{claim}` is not a string"))?;
        let Some(found) = sources.and_then(|s| s.get(source)) else {
            return Err(format!(
                "`_claim_names.{claim}` names the source {source:?}, which `_claim_sources` does not have"
            ));
        };
        let found = found.as_object().ok_or_else(|| format!("`_claim_sources.{source}` is not an object"))?;
        for field in ["endpoint", "access_token"] {
            if found.get(field).is_some_and(|v| !v.is_string()) {
                return Err(format!("`_claim_sources.{source}.{field}` is not a string"));
            }
        }
    }
    Ok(())
}
