//! Distributed claims (OpenID Connect Core 5.6.2): a token names a claim in
//! `_claim_names` and where to get it in `_claim_sources`, e.g.
//! `{"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1":
//! {"endpoint": "https://claims.example/groups", "access_token": "..."}}}`.
//!
//! As kube-apiserver: a claim the token carries itself wins; the endpoint
//! answers a JWT, verified like a token (an issuer's key, an accepted
//! algorithm, one of this issuer's audiences, not expired), and the claim is
//! taken from it; aggregated claims (a `JWT` inline) are not resolved.
//! Beyond kube-apiserver, which resolves the groups claim only, every claim
//! the configuration reads by name is resolved, and when a source has no
//! `access_token` the token under review is sent as the bearer.
//!
//! Requests go through the `http` capability (the endpoint must be
//! allowlisted), bounded in time and size; answers are kept in the
//! validator's state, keyed by a hash of endpoint and bearer, until the JWT
//! expires or `distributed-claims-cache-seconds` pass, whichever is first
//! (at most 64 answers and 128 KiB, the oldest evicted first).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::host::Host;
use crate::jwks::{Source, hex};
use crate::review::{Authenticator, Issuer, Stop};
use crate::token::Jws;

/// Largest claims answer accepted.
pub const MAX_ANSWER: usize = 64 * 1024;
/// Most bytes of answers kept at once: half the validator's state (256 KiB),
/// the rest is the issuers' keys'.
const CACHE_BUDGET: usize = 128 * 1024;
/// Most answers kept at once.
const MAX_CACHED: usize = 64;
const INDEX: &str = "dclaims-index";

/// The answers cached, oldest first: key, expiry, size.
#[derive(Default, Serialize, Deserialize)]
struct Index {
    entries: Vec<(String, i64, usize)>,
}

#[derive(Serialize, Deserialize)]
struct Cached {
    expires: i64,
    claims: Map<String, Value>,
}

fn reject<T>(reason: String) -> Result<T, Stop> {
    Err(Stop::Reject(reason))
}

/// Fill in the claims `issuer` resolves from their sources.
///
/// # Errors
///
/// [`Stop::Reject`] for a source that answers nothing valid,
/// [`Stop::Fail`] for one that cannot be reached.
pub fn resolve(
    validator: &Authenticator,
    issuer: &Issuer,
    host: &dyn Host,
    token: &str,
    claims: &mut Map<String, Value>,
) -> Result<(), Stop> {
    for name in &issuer.distributed {
        if claims.contains_key(name) {
            continue;
        }
        let Some(source) = claims.get("_claim_names").and_then(|n| n.get(name)).and_then(Value::as_str) else {
            continue;
        };
        // `_claim_sources` was checked with the signature: the source exists.
        let Some(source) = claims.get("_claim_sources").and_then(|s| s.get(source)) else { continue };
        let Some(endpoint) = source.get("endpoint").and_then(Value::as_str) else {
            // An aggregated claim (a `JWT` inline) is not resolved, as in kube-apiserver.
            continue;
        };
        let bearer = source.get("access_token").and_then(Value::as_str).unwrap_or(token);
        let answer = fetch(validator, issuer, host, endpoint, bearer)?;
        match answer.get(name) {
            Some(value) => {
                claims.insert(name.clone(), value.clone());
            }
            None => return reject(format!("the JWT from the claims endpoint {endpoint} has no `{name}` claim")),
        }
    }
    Ok(())
}

fn cache_key(endpoint: &str, bearer: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(endpoint.as_bytes());
    hasher.update([0]);
    hasher.update(bearer.as_bytes());
    format!("dclaims:{}", hex(&hasher.finalize()[..16]))
}

/// The claims of the endpoint's JWT: cached, or fetched and verified.
fn fetch(
    validator: &Authenticator,
    issuer: &Issuer,
    host: &dyn Host,
    endpoint: &str,
    bearer: &str,
) -> Result<Map<String, Value>, Stop> {
    let key = cache_key(endpoint, bearer);
    let now = host.now();
    if let Some(cached) = host.load(&key).and_then(|b| serde_json::from_slice::<Cached>(&b).ok())
        && cached.expires > now
    {
        return Ok(cached.claims);
    }
    let response = host.get(endpoint, Some(bearer)).map_err(|e| match e {
        // The token chose the endpoint: one the grants do not allow refuses the token.
        credbroker_sdk::HostError::Denied(why) => {
            Stop::Reject(format!("the claims endpoint {endpoint} is refused: {why}"))
        }
        other => Stop::host(&format!("the claims endpoint {endpoint}"), &other),
    })?;
    match response.status {
        200..=299 => {}
        500..=599 => {
            return Err(Stop::Fail(credbroker_sdk::Error::unavailable(format!(
                "the claims endpoint {endpoint} answered {}",
                response.status
            ))));
        }
        status => return reject(format!("the claims endpoint {endpoint} answered {status}")),
    }
    if response.body.len() > MAX_ANSWER {
        return reject(format!("the claims endpoint {endpoint} answered more than {MAX_ANSWER} bytes"));
    }
    let text = String::from_utf8(response.body)
        .map_err(|_| Stop::Reject(format!("the claims endpoint {endpoint} answered no JWT")))?;
    let jwt = text.trim();
    let jws =
        Jws::parse(jwt).map_err(|e| Stop::Reject(format!("the claims endpoint {endpoint} answered no JWT ({e})")))?;
    let iss = jws
        .untrusted_issuer()
        .ok_or_else(|| Stop::Reject(format!("the JWT from the claims endpoint {endpoint} names no issuer")))?
        .to_string();
    // Keys: a configured issuer's, else those of the issuer the JWT names
    // (discovery through the allowlist), as kube-apiserver does.
    let discovered;
    let source = match validator.issuer(&iss) {
        Some(known) => known.source(),
        None => {
            discovered = format!("{}/.well-known/openid-configuration", iss.trim_end_matches('/'));
            Source { issuer: &iss, discovery_url: &discovered, lenient_issuer: false }
        }
    };
    let verified = issuer.verify_with(validator, host, jws, &source).map_err(|stop| match stop {
        Stop::Reject(why) => Stop::Reject(format!("the JWT from the claims endpoint {endpoint}: {why}")),
        fail => fail,
    })?;
    let expires = verified.get("exp").and_then(Value::as_f64).map_or(now, |e| e as i64);
    store(host, &key, expires.min(now + validator.claims_cache_seconds), &verified);
    Ok(verified)
}

/// Keep an answer, evicting expired ones and then the oldest beyond the
/// bounds; a failure to store only costs a fetch later.
fn store(host: &dyn Host, key: &str, expires: i64, claims: &Map<String, Value>) {
    let Ok(data) = serde_json::to_vec(&Cached { expires, claims: claims.clone() }) else { return };
    let now = host.now();
    if data.len() > CACHE_BUDGET / 4 || expires <= now {
        return;
    }
    let mut index: Index = host.load(INDEX).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    index.entries.retain(|(k, expires, _)| {
        let keep = *expires > now && k != key;
        if !keep && k != key {
            host.forget(k);
        }
        keep
    });
    let used = |index: &Index| index.entries.iter().map(|(_, _, size)| size).sum::<usize>();
    while !index.entries.is_empty() && (index.entries.len() >= MAX_CACHED || used(&index) + data.len() > CACHE_BUDGET) {
        let (oldest, _, _) = index.entries.remove(0);
        host.forget(&oldest);
    }
    if host.store(key, &data).is_ok() {
        index.entries.push((key.to_string(), expires, data.len()));
    }
    if let Ok(index) = serde_json::to_vec(&index)
        && let Err(e) = host.store(INDEX, &index)
    {
        host.debug(&format!("cannot index cached distributed claims: {}", e.describe()));
    }
}
