//! Verified claims to the user, in kube-apiserver's order and with its rules:
//! username, groups, uid, extra (and the `jti` credential id), then the
//! required claims, the claim validation rules and the user validation rules.

use std::collections::BTreeMap;

use credbroker_sdk::UserInfo;
use serde_json::{Map, Value};

use crate::cel::{Cel, Expression, Input, Output};
use crate::review::{Groups, Issuer, Stop, Uid, Username};

/// The extra key kube-apiserver puts a token's `jti` under (`JTI=<jti>`).
pub const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

fn reject<T>(reason: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Reject(reason.into()))
}

/// The user `claims` map to under `issuer`'s mappings and rules.
///
/// # Errors
///
/// [`Stop::Reject`] when a mapping or a rule refuses the token.
pub fn user(cel: &Cel, issuer: &Issuer, claims: &Map<String, Value>) -> Result<UserInfo, Stop> {
    // Converted once for every expression of the review, and only the claims they read.
    let input = issuer.cel_claims.as_ref().map(|wanted| Input::claims(claims, wanted));
    let evaluate = |what: &str, e: &Expression| -> Result<Output, Stop> {
        let Some(input) = &input else { return reject("internal: no claims bound for CEL") };
        e.evaluate(cel, input)
            .map_err(|err| Stop::Reject(format!("the {what} expression `{}` failed: {err}", e.source)))
    };

    let username = match &issuer.username {
        Username::Claim { claim, prefix } => {
            let name = string_claim(claims, claim)?;
            if claim == "email" {
                match claims.get("email_verified") {
                    None | Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => return reject("the email is not verified (`email_verified` is false)"),
                    Some(_) => return reject("the `email_verified` claim is not a boolean"),
                }
            }
            format!("{prefix}{name}")
        }
        Username::Expression(e) => match evaluate("username", e)? {
            Output::String(s) => s,
            other => {
                return reject(format!(
                    "the username expression `{}` must return a string, not {}",
                    e.source,
                    other.kind()
                ));
            }
        },
    };

    let groups = match &issuer.groups {
        Groups::None => Vec::new(),
        Groups::Claim { claim, prefix } => match claims.get(claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(g)) => vec![format!("{prefix}{g}")],
            Some(Value::Array(items)) => items
                .iter()
                .map(|g| g.as_str().map(|g| format!("{prefix}{g}")))
                .collect::<Option<Vec<_>>>()
                .map_or_else(|| reject(format!("the `{claim}` claim is not a string or a list of strings")), Ok)?,
            Some(_) => return reject(format!("the `{claim}` claim is not a string or a list of strings")),
        },
        Groups::Expression(e) => string_list("groups", e, evaluate("groups", e)?)?,
    };

    let uid = match &issuer.uid {
        Uid::None => String::new(),
        Uid::Claim(claim) => string_claim(claims, claim)?,
        Uid::Expression(e) => match evaluate("uid", e)? {
            Output::String(s) => s,
            other => {
                return reject(format!("the uid expression `{}` must return a string, not {}", e.source, other.kind()));
            }
        },
    };

    let mut extra = BTreeMap::new();
    for mapping in &issuer.extra {
        let values = string_list("extra", &mapping.expression, evaluate("extra", &mapping.expression)?)?;
        if !values.is_empty() {
            extra.insert(mapping.key.clone(), values);
        }
    }
    if let Some(Value::String(jti)) = claims.get("jti")
        && !jti.is_empty()
    {
        extra.insert(CREDENTIAL_ID.to_string(), vec![format!("JTI={jti}")]);
    }

    for required in &issuer.required {
        let ok = match claims.get(&required.claim) {
            None => return reject(format!("the required claim `{}` is missing", required.claim)),
            Some(Value::String(v)) => *v == required.value,
            Some(Value::Array(items)) if required.list_member => {
                items.iter().any(|i| i.as_str() == Some(&required.value))
            }
            Some(_) => return reject(format!("the required claim `{}` is not a string", required.claim)),
        };
        if !ok {
            return reject(format!("the required claim `{}` is not {:?}", required.claim, required.value));
        }
    }

    for rule in &issuer.claim_rules {
        check_rule(
            "claim validation rule",
            &rule.expression,
            &rule.message,
            evaluate("claim validation", &rule.expression)?,
        )?;
    }

    if !issuer.user_rules.is_empty() {
        let input = Input::user(&username, &uid, &groups, &extra);
        for rule in &issuer.user_rules {
            let result = rule.expression.evaluate(cel, &input).map_err(|err| {
                Stop::Reject(format!("the user validation rule `{}` failed: {err}", rule.expression.source))
            })?;
            check_rule("user validation rule", &rule.expression, &rule.message, result)?;
        }
    }

    Ok(UserInfo { username, uid: (!uid.is_empty()).then_some(uid), groups, extra: extra.into_iter().collect() })
}

/// A claim that must be a string.
fn string_claim(claims: &Map<String, Value>, claim: &str) -> Result<String, Stop> {
    match claims.get(claim) {
        None => reject(format!("the token has no `{claim}` claim")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => reject(format!("the `{claim}` claim is not a string")),
    }
}

fn check_rule(what: &str, expression: &Expression, message: &str, result: Output) -> Result<(), Stop> {
    match result {
        Output::Bool(true) => Ok(()),
        Output::Bool(false) if message.is_empty() => reject(format!("the {what} `{}` is false", expression.source)),
        Output::Bool(false) => reject(message.to_string()),
        other => reject(format!("the {what} `{}` must return a boolean, not {}", expression.source, other.kind())),
    }
}

/// kube-apiserver's `convertCELValueToStringList`: a string or a list of
/// strings; `null`, `""` and `[]` are nothing, and empty strings are dropped.
fn string_list(what: &str, expression: &Expression, value: Output) -> Result<Vec<String>, Stop> {
    match value {
        Output::Null => Ok(Vec::new()),
        Output::String(s) if s.is_empty() => Ok(Vec::new()),
        Output::String(s) => Ok(vec![s]),
        Output::List(Some(mut items)) => {
            items.retain(|s| !s.is_empty());
            Ok(items)
        }
        _ => reject(format!("the {what} expression `{}` must return a string or a list of strings", expression.source)),
    }
}
