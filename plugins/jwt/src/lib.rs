//! The `jwt` validator: bearer tokens that are JWTs from one OpenID Connect
//! issuer, checked like kube-apiserver's structured AuthenticationConfiguration
//! (`jwt` issuers with claim mappings), inside the sandbox.
//!
//! The issuer's JWKS is fetched through the `http` capability and cached in the
//! validator's state; a token signed with an unknown key id triggers a refetch
//! (at most every `jwks-min-refresh-seconds`), so key rotation needs no restart.
//!
//! Settings: `issuer` (required; must equal the tokens' `iss`), `audiences`
//! (required, comma-separated; a token's `aud` must contain one), `algorithms`
//! (default `RS256,ES256,EdDSA`; `none` and HMAC are never accepted),
//! `clock-skew-seconds` (60), `username-claim` (`sub`), `username-prefix` (``),
//! `groups-claim` (`groups`), `groups-prefix` (``), `uid-claim` (`sub`),
//! `extra:KEY` (a claim whose values become extra attribute KEY),
//! `required-claims` (`claim=value,...`), `jwks-cache-seconds` (3600),
//! `jwks-min-refresh-seconds` (60).
//!
//! Like kube-apiserver's AuthenticationConfiguration, CEL expressions over the
//! verified `claims` can validate and map: `claim-validation-rules` (a JSON
//! list of `{"expression", "message"}`; each must be true), and
//! `username-expression`, `groups-expression`, `uid-expression` (overriding the
//! claim settings, prefixes included).

mod host_crypto;

use credbroker_sdk::{Error, ReviewOutcome, TokenReview, UserInfo, Validator, config, http, log, state};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

struct Jwt;

/// The JSON of a JWT segment, without checking anything.
fn segment(token: &str, index: usize) -> Option<Value> {
    use base64::Engine as _;
    let part = token.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn now() -> i64 {
    credbroker_sdk::now_unix()
}

fn list(setting: &str, default: &str) -> Vec<String> {
    config::get(setting)
        .unwrap_or_else(|| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    match name {
        "none" => Err("`alg: none` is never accepted".into()),
        n if n.starts_with("HS") => Err(format!("HMAC ({n}) is never accepted for issuer tokens")),
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(format!("algorithm `{other}` is not supported")),
    }
}

/// The issuer's JWKS from the state cache, or fetched. `force` refetches
/// (an unknown key id), unless the last fetch is too recent.
fn jwks(issuer: &str, force: bool) -> Result<(JwkSet, bool), Error> {
    let cache_seconds: i64 = config::parse_or("jwks-cache-seconds", 3600)?;
    let min_refresh: i64 = config::parse_or("jwks-min-refresh-seconds", 60)?;
    let cached: Option<Value> = state::get("jwks").and_then(|b| serde_json::from_slice(&b).ok());
    let fetched_at = cached.as_ref().and_then(|c| c["fetched_at"].as_i64()).unwrap_or(0);
    let age = now() - fetched_at;
    let fresh_enough = if force { age < min_refresh } else { age < cache_seconds };
    if let Some(cached) = &cached
        && fresh_enough
        && let Ok(set) = serde_json::from_value::<JwkSet>(cached["jwks"].clone())
    {
        return Ok((set, false));
    }
    let discovery_url = format!("{issuer}/.well-known/openid-configuration");
    let discovery = http::get(&discovery_url)?;
    if !discovery.is_success() {
        return Err(Error::unavailable(format!("discovery at {discovery_url} answered {}", discovery.status)));
    }
    let document: Value = serde_json::from_slice(&discovery.body)
        .map_err(|e| Error::unavailable(format!("discovery at {discovery_url} is not JSON: {e}")))?;
    let jwks_uri =
        document["jwks_uri"].as_str().ok_or_else(|| Error::failed("the discovery document has no jwks_uri"))?;
    let response = http::get(jwks_uri)?;
    if !response.is_success() {
        return Err(Error::unavailable(format!("the JWKS at {jwks_uri} answered {}", response.status)));
    }
    let set: JwkSet = serde_json::from_slice(&response.body)
        .map_err(|e| Error::unavailable(format!("the JWKS at {jwks_uri} is not a key set: {e}")))?;
    let cached = serde_json::json!({ "fetched_at": now(), "jwks": set });
    state::set("jwks", cached.to_string())?;
    log::debug(&format!("fetched {} key(s) from {jwks_uri}", set.keys.len()));
    Ok((set, true))
}

/// The values of `claim`: a string, or a list of strings.
fn claim_values(claims: &Value, claim: &str) -> Vec<String> {
    match &claims[claim] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

fn verify(review: &TokenReview) -> Result<Result<Value, String>, Error> {
    let issuer = config::require("issuer")?.trim_end_matches('/').to_string();
    let audiences = list("audiences", "");
    if audiences.is_empty() {
        return Err(Error::misconfigured("setting `audiences` is required (the client ids tokens are issued to)"));
    }
    let token = review.token.as_str();
    let (Some(header), Some(unverified)) = (segment(token, 0), segment(token, 1)) else {
        return Ok(Err("not a JWT".into()));
    };
    let alg_name = header["alg"].as_str().unwrap_or("none");
    let alg = match parse_algorithm(alg_name) {
        Ok(alg) => alg,
        Err(reason) => return Ok(Err(reason)),
    };
    let allowed = list("algorithms", "RS256,ES256,EdDSA");
    if !allowed.iter().any(|a| a == alg_name) {
        return Ok(Err(format!("algorithm {alg_name} is not allowed (allowed: {})", allowed.join(", "))));
    }
    if unverified["iss"].as_str().map(|i| i.trim_end_matches('/')) != Some(issuer.as_str()) {
        return Ok(Err(format!("the token's issuer {} is not {issuer}", unverified["iss"])));
    }
    let kid = header["kid"].as_str();
    let (mut set, mut fresh) = jwks(&issuer, false)?;
    let find = |set: &JwkSet| match kid {
        Some(kid) => set.find(kid).cloned(),
        None => set.keys.first().cloned(),
    };
    let mut key = find(&set);
    if key.is_none() && !fresh {
        (set, fresh) = jwks(&issuer, true)?;
        key = find(&set);
    }
    let Some(jwk) = key else {
        let _ = fresh;
        return Ok(Err(format!("unknown key id {}", kid.unwrap_or("(none)"))));
    };
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| Error::failed(format!("unusable key in the JWKS: {e}")))?;
    let skew: u64 = config::parse_or("clock-skew-seconds", 60)?;
    let mut validation = Validation::new(alg);
    validation.leeway = skew;
    validation.validate_nbf = true;
    validation.set_issuer(&[&issuer]);
    validation.set_audience(&audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    host_crypto::install();
    let claims = match jsonwebtoken::decode::<Value>(token, &decoding, &validation) {
        Ok(data) => data.claims,
        Err(e) => return Ok(Err(format!("invalid token: {e}"))),
    };
    if claims["iat"].as_i64().is_some_and(|iat| iat > now() + i64::try_from(skew).unwrap_or(0)) {
        return Ok(Err("the token was issued in the future".into()));
    }
    for requirement in list("required-claims", "") {
        let (name, value) = requirement.split_once('=').unwrap_or((requirement.as_str(), ""));
        if !claim_values(&claims, name).iter().any(|v| v == value) {
            return Ok(Err(format!("required claim {name}={value} is missing")));
        }
    }
    Ok(Ok(claims))
}

/// One `claim-validation-rules` entry.
#[derive(serde::Deserialize)]
struct Rule {
    expression: String,
    #[serde(default)]
    message: Option<String>,
}

/// Evaluate CEL `expression` with `claims` bound.
fn cel_eval(expression: &str, claims: &Value) -> Result<cel::Value, Error> {
    let program = cel::Program::compile(expression)
        .map_err(|e| Error::misconfigured(format!("CEL expression `{expression}` does not parse: {e}")))?;
    let mut context = cel::Context::default();
    context
        .add_variable("claims", claims.clone())
        .map_err(|e| Error::failed(format!("cannot bind the claims for CEL: {e}")))?;
    // A missing claim is an evaluation error, as in Kubernetes: the token is
    // refused, not the configuration.
    program.execute(&context).map_err(|e| Error::denied(format!("CEL expression `{expression}` failed: {e}")))
}

fn cel_strings(value: cel::Value) -> Option<Vec<String>> {
    match value {
        cel::Value::String(s) => Some(vec![s.to_string()]),
        cel::Value::List(items) => items
            .iter()
            .map(|item| match item {
                cel::Value::String(s) => Some(s.to_string()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The string an expression setting yields, if the setting is present.
fn cel_setting(setting: &str, claims: &Value) -> Result<Option<Vec<String>>, Error> {
    let Some(expression) = config::get(setting).filter(|e| !e.trim().is_empty()) else { return Ok(None) };
    let value = cel_eval(&expression, claims)?;
    cel_strings(value)
        .map(Some)
        .ok_or_else(|| Error::misconfigured(format!("setting `{setting}` must yield a string or a list of strings")))
}

/// Run `claim-validation-rules`; the first failing rule's message.
fn failed_rule(claims: &Value) -> Result<Option<String>, Error> {
    let Some(text) = config::get("claim-validation-rules").filter(|t| !t.trim().is_empty()) else { return Ok(None) };
    let rules: Vec<Rule> = serde_json::from_str(&text).map_err(|e| {
        Error::misconfigured(format!(
            "claim-validation-rules must be a JSON list of {{\"expression\", \"message\"}}: {e}"
        ))
    })?;
    for rule in rules {
        match cel_eval(&rule.expression, claims) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(_) | Err(Error::Denied(_)) => {
                return Ok(Some(
                    rule.message.unwrap_or_else(|| format!("claim validation rule `{}` failed", rule.expression)),
                ));
            }
            Err(other) => return Err(other),
        }
    }
    Ok(None)
}

impl Validator for Jwt {
    fn validate(review: TokenReview) -> Result<ReviewOutcome, Error> {
        let claims = match verify(&review)? {
            Ok(claims) => claims,
            Err(reason) => return Ok(ReviewOutcome::rejected(reason)),
        };
        if let Some(message) = failed_rule(&claims)? {
            return Ok(ReviewOutcome::rejected(message));
        }
        if config::get("username-expression").is_some() {
            return map_with_expressions(&claims);
        }
        let username_claim = config::get("username-claim").unwrap_or_else(|| "sub".into());
        if username_claim == "email" && claims["email_verified"] == Value::Bool(false) {
            return Ok(ReviewOutcome::rejected("the email claim is not verified"));
        }
        let Some(name) = claim_values(&claims, &username_claim).into_iter().next() else {
            return Ok(ReviewOutcome::rejected(format!("the token has no `{username_claim}` claim")));
        };
        let username = format!("{}{name}", config::get("username-prefix").unwrap_or_default());
        let groups_prefix = config::get("groups-prefix").unwrap_or_default();
        let groups = claim_values(&claims, &config::get("groups-claim").unwrap_or_else(|| "groups".into()))
            .into_iter()
            .map(|g| format!("{groups_prefix}{g}"))
            .collect();
        let uid = claim_values(&claims, &config::get("uid-claim").unwrap_or_else(|| "sub".into())).into_iter().next();
        let extra = config::keys()
            .into_iter()
            .filter_map(|key| {
                let name = key.strip_prefix("extra:")?.to_string();
                let claim = config::get(&key)?;
                let values = claim_values(&claims, &claim);
                (!values.is_empty()).then_some((name, values))
            })
            .collect();
        Ok(ReviewOutcome::authenticated(UserInfo { username, uid, groups, extra }))
    }
}

/// The user from the `*-expression` settings (CEL over the claims).
fn map_with_expressions(claims: &Value) -> Result<ReviewOutcome, Error> {
    let username = match cel_setting("username-expression", claims) {
        Ok(Some(mut names)) if names.len() == 1 => names.remove(0),
        Ok(_) => return Err(Error::misconfigured("username-expression must yield one string")),
        Err(Error::Denied(reason)) => return Ok(ReviewOutcome::rejected(reason)),
        Err(other) => return Err(other),
    };
    let groups = match cel_setting("groups-expression", claims) {
        Ok(groups) => groups.unwrap_or_default(),
        Err(Error::Denied(reason)) => return Ok(ReviewOutcome::rejected(reason)),
        Err(other) => return Err(other),
    };
    let uid = match cel_setting("uid-expression", claims) {
        Ok(uid) => uid.and_then(|mut u| (!u.is_empty()).then(|| u.remove(0))),
        Err(Error::Denied(reason)) => return Ok(ReviewOutcome::rejected(reason)),
        Err(other) => return Err(other),
    };
    Ok(ReviewOutcome::authenticated(UserInfo { username, uid, groups, extra: Vec::new() }))
}

credbroker_sdk::export_validator!(Jwt);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_algorithms_are_refused() {
        assert!(parse_algorithm("none").unwrap_err().contains("never"));
        assert!(parse_algorithm("HS256").unwrap_err().contains("HMAC"));
        assert_eq!(parse_algorithm("RS256").unwrap(), Algorithm::RS256);
    }

    #[test]
    fn cel_expressions_see_the_claims() {
        let claims = serde_json::json!({"sub": "alice", "groups": ["devs", "ops"], "email": "a@corp.example"});
        assert!(matches!(cel_eval("'devs' in claims.groups", &claims).unwrap(), cel::Value::Bool(true)));
        assert_eq!(cel_strings(cel_eval("'oidc:' + claims.sub", &claims).unwrap()).unwrap(), ["oidc:alice"]);
        assert_eq!(
            cel_strings(cel_eval("claims.groups.map(g, 'team:' + g)", &claims).unwrap()).unwrap(),
            ["team:devs", "team:ops"]
        );
        assert!(matches!(cel_eval("claims.missing == 'x'", &claims), Err(Error::Denied(_))));
        assert!(matches!(cel_eval("claims.(", &claims), Err(Error::Misconfigured(_))));
    }

    #[test]
    fn claims_are_strings_or_lists() {
        let claims = serde_json::json!({"groups": ["a", "b", 3], "sub": "alice", "n": 1});
        assert_eq!(claim_values(&claims, "groups"), ["a", "b"]);
        assert_eq!(claim_values(&claims, "sub"), ["alice"]);
        assert!(claim_values(&claims, "n").is_empty());
    }
}
