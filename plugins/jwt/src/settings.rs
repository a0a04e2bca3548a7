//! The validator's settings, read once per load into an [`Authenticator`]:
//! either `authentication-config` (kube-apiserver's AuthenticationConfiguration,
//! see [`crate::authn_config`]) or the flat settings of one issuer
//! (`issuer`, `audiences`, ...), which keep the meaning they always had.

use std::collections::BTreeSet;

use credbroker_sdk::Error;

use crate::authn_config::{self, Common};
use crate::cel::{Cel, Scope, Want};
use crate::host::Settings;
use crate::jwks::Refresh;
use crate::review::{Authenticator, Extra, Groups, Issuer, Required, Rule, Uid, Username};
use crate::token::{Algorithm, Times};
use crate::validation;

/// Settings for either way of configuring.
const COMMON: &[&str] =
    &["algorithms", "jwks-cache-seconds", "jwks-min-refresh-seconds", "distributed-claims-cache-seconds", "granted-ca"];

/// The flat settings of one issuer.
const FLAT: &[&str] = &[
    "issuer",
    "audiences",
    "clock-skew-seconds",
    "username-claim",
    "username-prefix",
    "groups-claim",
    "groups-prefix",
    "uid-claim",
    "required-claims",
    "claim-validation-rules",
    "username-expression",
    "groups-expression",
    "uid-expression",
];

const FILE: &str = "authentication-config";

fn misconfigured(message: impl Into<String>) -> Error {
    Error::misconfigured(message.into())
}

/// A comma-separated list setting, blanks dropped.
fn list(settings: &dyn Settings, key: &str) -> Option<Vec<String>> {
    settings.get(key).map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

fn seconds(settings: &dyn Settings, key: &str, default: i64) -> Result<i64, Error> {
    match settings.get(key) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n),
            _ => Err(misconfigured(format!("setting `{key}` must be a number of seconds, not {v:?}"))),
        },
    }
}

fn algorithms(settings: &dyn Settings, default: &[Algorithm]) -> Result<Vec<Algorithm>, Error> {
    let Some(names) = list(settings, "algorithms") else { return Ok(default.to_vec()) };
    if names.is_empty() {
        return Err(misconfigured("setting `algorithms` is empty"));
    }
    names
        .iter()
        .map(|name| Algorithm::parse(name).map_err(|why| misconfigured(format!("setting `algorithms`: {why}"))))
        .collect()
}

/// Build the validator from its settings.
///
/// # Errors
///
/// [`Error::Misconfigured`] naming every problem (and, for
/// `authentication-config`, the field of the file).
pub fn load(settings: &dyn Settings) -> Result<Authenticator, Error> {
    let keys = settings.keys();
    let unknown: Vec<&String> = keys
        .iter()
        .filter(|k| {
            !COMMON.contains(&k.as_str()) && !FLAT.contains(&k.as_str()) && *k != FILE && !k.starts_with("extra:")
        })
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = [FILE].iter().chain(COMMON).chain(FLAT).copied().chain(["extra:KEY"]).collect();
        return Err(misconfigured(format!(
            "unknown setting(s) {}: this validator reads {}",
            unknown.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
            known.join(", ")
        )));
    }
    let refresh = Refresh {
        cache_seconds: seconds(settings, "jwks-cache-seconds", 3600)?,
        min_refresh_seconds: seconds(settings, "jwks-min-refresh-seconds", 60)?,
    };
    let claims_cache_seconds = seconds(settings, "distributed-claims-cache-seconds", 300)?;
    let cel = Cel::new();
    let issuers = match settings.get(FILE) {
        Some(text) => {
            let flat: Vec<&String> =
                keys.iter().filter(|k| FLAT.contains(&k.as_str()) || k.starts_with("extra:")).collect();
            if !flat.is_empty() {
                return Err(misconfigured(format!(
                    "setting `{FILE}` describes the issuers; {} belong to the flat settings of one issuer: say it in the file (claimMappings, claimValidationRules) instead",
                    flat.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                )));
            }
            let granted_ca = match settings.get("granted-ca") {
                None => None,
                Some(pem) => Some(
                    validation::certificates(&pem)
                        .map_err(|why| misconfigured(format!("setting `granted-ca`: {why}")))?,
                ),
            };
            let common = Common { algorithms: algorithms(settings, Algorithm::KUBE_DEFAULT)?, granted_ca };
            authn_config::build(&text, &cel, &common)
                .map_err(|why| misconfigured(format!("setting `{FILE}`: {why}")))?
        }
        None if settings.get("issuer").is_some() => {
            if settings.get("granted-ca").is_some() {
                return Err(misconfigured(
                    "setting `granted-ca` checks the certificateAuthority of an authentication-config; the flat settings have none",
                ));
            }
            vec![flat_issuer(settings, &cel)?]
        }
        None => {
            return Err(misconfigured(format!(
                "set `{FILE}` (kube-apiserver's AuthenticationConfiguration, e.g. \"file:/etc/kubernetes/authn.yaml\"), or `issuer` and `audiences`"
            )));
        }
    };
    Ok(Authenticator { issuers, cel, refresh, claims_cache_seconds })
}

/// The flat settings of one issuer.
fn flat_issuer(settings: &dyn Settings, cel: &Cel) -> Result<Issuer, Error> {
    let url = settings.get("issuer").unwrap_or_default().trim_end_matches('/').to_string();
    if url.is_empty() {
        return Err(misconfigured("setting `issuer` is empty"));
    }
    let audiences = list(settings, "audiences").unwrap_or_default();
    if audiences.is_empty() {
        return Err(misconfigured("setting `audiences` is required (the client ids tokens are issued to)"));
    }
    let skew = seconds(settings, "clock-skew-seconds", 60)?;
    let compile = |key: &str, source: &str, scope, want| {
        cel.compile(source, scope, want).map_err(|why| misconfigured(format!("setting `{key}`: `{source}` {why}")))
    };
    let get = |key: &str| settings.get(key).filter(|v| !v.trim().is_empty());

    // With `username-expression`, the user comes from the expressions alone.
    let (username, groups, uid) = match get("username-expression") {
        Some(source) => {
            let username = compile("username-expression", &source, Scope::Claims, Want::Any)?;
            let groups = match get("groups-expression") {
                Some(s) => Groups::Expression(compile("groups-expression", &s, Scope::Claims, Want::Any)?),
                None => Groups::None,
            };
            let uid = match get("uid-expression") {
                Some(s) => Uid::Expression(compile("uid-expression", &s, Scope::Claims, Want::Any)?),
                None => Uid::None,
            };
            (Username::Expression(username), groups, uid)
        }
        None => {
            let claim = |key: &str, default: &str| settings.get(key).unwrap_or_else(|| default.to_string());
            let username =
                Username::Claim { claim: claim("username-claim", "sub"), prefix: claim("username-prefix", "") };
            let groups = Groups::Claim { claim: claim("groups-claim", "groups"), prefix: claim("groups-prefix", "") };
            (username, groups, Uid::Claim(claim("uid-claim", "sub")))
        }
    };

    let mut extra = Vec::new();
    for key in settings.keys().into_iter().filter(|k| k.starts_with("extra:")) {
        let name = key.trim_start_matches("extra:").to_string();
        let claim = settings.get(&key).unwrap_or_default();
        // A claim's values, none when it is absent.
        let quoted = serde_json::to_string(&claim).map_err(|e| misconfigured(format!("setting `{key}`: {e}")))?;
        let expression = compile(&key, &format!("claims[?{quoted}].orValue(null)"), Scope::Claims, Want::Any)?;
        extra.push(Extra { key: name, expression });
    }

    let mut required = Vec::new();
    for pair in list(settings, "required-claims").unwrap_or_default() {
        let (claim, value) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
        required.push(Required { claim: claim.to_string(), value: value.to_string(), list_member: true });
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FlatRule {
        expression: String,
        #[serde(default)]
        message: Option<String>,
    }
    let mut claim_rules = Vec::new();
    if let Some(text) = get("claim-validation-rules") {
        let rules: Vec<FlatRule> = serde_json::from_str(&text).map_err(|e| {
            misconfigured(format!(
                "setting `claim-validation-rules` must be a JSON list of {{\"expression\", \"message\"}}: {e}"
            ))
        })?;
        for (i, rule) in rules.into_iter().enumerate() {
            let expression =
                compile(&format!("claim-validation-rules[{i}]"), &rule.expression, Scope::Claims, Want::Bool)?;
            let message = rule.message.unwrap_or_else(|| format!("claim validation rule `{}` failed", rule.expression));
            claim_rules.push(Rule { expression, message });
        }
    }
    Ok(Issuer {
        discovery_url: format!("{url}/.well-known/openid-configuration"),
        url,
        lenient_url: true,
        audiences,
        algorithms: algorithms(settings, Algorithm::LEGACY_DEFAULT)?,
        times: Times { exp_leeway: skew, nbf_leeway: skew, iat_leeway: Some(skew) },
        username,
        groups,
        uid,
        extra,
        required,
        claim_rules,
        user_rules: Vec::new(),
        distributed: BTreeSet::new(),
        cel_claims: None,
    }
    .reading_claims())
}
