//! kube-apiserver's structured authentication configuration
//! (`AuthenticationConfiguration`, `apiserver.config.k8s.io/v1` and
//! `v1beta1`), read verbatim: the same YAML file kube-apiserver takes with
//! `--authentication-config`, decoded strictly (an unknown field is an
//! error, as kube-apiserver's strict decoding makes it), validated by
//! kube-apiserver's rules and compiled into [`Issuer`]s.
//!
//! What a webhook cannot honour is a load error naming the field:
//! `anonymous` (requests without a token never reach the webhook) and
//! `issuer.egressSelectorType` (the host makes the connections, where
//! `grants.http` allows). `issuer.certificateAuthority` is honoured by the
//! host's TLS roots: see [`Common::granted_ca`].

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::cel::{Cel, Expression, Scope, Want};
use crate::review::{Extra, Groups, Issuer, Required, Rule, Uid, Username};
use crate::token::{Algorithm, Times};
use crate::validation::{self, Problems};

/// The file (`AuthenticationConfiguration`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Configuration {
    api_version: Option<String>,
    kind: Option<String>,
    jwt: Option<Vec<Jwt>>,
    anonymous: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Jwt {
    #[serde(default)]
    issuer: IssuerSpec,
    #[serde(default)]
    claim_validation_rules: Vec<ClaimValidationRule>,
    #[serde(default)]
    claim_mappings: ClaimMappings,
    #[serde(default)]
    user_validation_rules: Vec<UserValidationRule>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IssuerSpec {
    #[serde(default)]
    url: String,
    #[serde(default, rename = "discoveryURL")]
    discovery_url: String,
    #[serde(default)]
    certificate_authority: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    audience_match_policy: String,
    egress_selector_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClaimValidationRule {
    #[serde(default)]
    claim: String,
    #[serde(default)]
    required_value: String,
    #[serde(default)]
    expression: String,
    #[serde(default)]
    message: String,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClaimMappings {
    #[serde(default)]
    username: PrefixedClaimOrExpression,
    #[serde(default)]
    groups: PrefixedClaimOrExpression,
    #[serde(default)]
    uid: ClaimOrExpression,
    #[serde(default)]
    extra: Vec<ExtraMapping>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PrefixedClaimOrExpression {
    #[serde(default)]
    claim: String,
    /// `None` and `""` differ: with a claim, the prefix must be written.
    prefix: Option<String>,
    #[serde(default)]
    expression: String,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClaimOrExpression {
    #[serde(default)]
    claim: String,
    #[serde(default)]
    expression: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExtraMapping {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value_expression: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UserValidationRule {
    #[serde(default)]
    expression: String,
    #[serde(default)]
    message: String,
}

/// What the validator's other settings add to every issuer of the file.
pub struct Common {
    pub algorithms: Vec<Algorithm>,
    /// The certificates of the setting `granted-ca`: the bundle the operator
    /// says `grants.ca-file` holds. The plugin's HTTPS is made by the host
    /// with the roots of `grants.ca-file`, so an issuer's
    /// `certificateAuthority` is honoured when its certificates are in that
    /// file; the plugin cannot read the grant, so the operator passes the
    /// same file as this setting (`file:<path>`) and the load checks it.
    pub granted_ca: Option<Vec<Vec<u8>>>,
}

/// kube-apiserver's limit on `jwt` entries.
const MAX_ISSUERS: usize = 64;

/// The API versions read.
pub const API_VERSIONS: &[&str] = &["apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1beta1"];

/// Read `text`, kube-apiserver's AuthenticationConfiguration, into issuers.
///
/// # Errors
///
/// Every problem found, each naming its field.
pub fn build(text: &str, cel: &Cel, common: &Common) -> Result<Vec<Issuer>, String> {
    let file: Configuration =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not an AuthenticationConfiguration: {e}"))?;
    let mut problems = Problems::default();
    match file.api_version.as_deref() {
        Some(v) if API_VERSIONS.contains(&v) => {}
        Some(other) => {
            problems.add("apiVersion", format!("{other:?} is not supported; use {}", API_VERSIONS.join(" or ")))
        }
        None => problems.add("apiVersion", format!("required: {}", API_VERSIONS.join(" or "))),
    }
    match file.kind.as_deref() {
        Some("AuthenticationConfiguration") => {}
        Some(other) => problems.add("kind", format!("{other:?}: this setting takes an AuthenticationConfiguration")),
        None => problems.add("kind", "required: AuthenticationConfiguration"),
    }
    if file.anonymous.is_some() {
        problems.add(
            "anonymous",
            "not supported: requests without a token never reach this webhook; configure anonymous authentication in kube-apiserver's own file",
        );
    }
    let jwt = file.jwt.unwrap_or_default();
    if jwt.len() > MAX_ISSUERS {
        problems.add("jwt", format!("{} issuers, at most {MAX_ISSUERS}", jwt.len()));
        return Err(problems.to_string());
    }
    let mut issuers = Vec::new();
    let (mut urls, mut discovery_urls) = (BTreeSet::new(), BTreeSet::new());
    for (i, entry) in jwt.into_iter().enumerate() {
        let path = format!("jwt[{i}]");
        if !entry.issuer.url.is_empty() && !urls.insert(entry.issuer.url.clone()) {
            problems.add(format!("{path}.issuer.url"), format!("duplicate issuer {:?}", entry.issuer.url));
        }
        if !entry.issuer.discovery_url.is_empty() && !discovery_urls.insert(entry.issuer.discovery_url.clone()) {
            problems.add(
                format!("{path}.issuer.discoveryURL"),
                format!("duplicate discoveryURL {:?}", entry.issuer.discovery_url),
            );
        }
        if let Some(issuer) = issuer(&path, entry, cel, common, &mut problems) {
            issuers.push(issuer);
        }
    }
    if problems.is_empty() { Ok(issuers) } else { Err(problems.to_string()) }
}

/// Compile `source`, or record why not at `path`.
fn compile(
    cel: &Cel,
    problems: &mut Problems,
    path: &str,
    source: &str,
    scope: Scope,
    want: Want,
) -> Option<Expression> {
    cel.compile(source, scope, want).map_err(|why| problems.add(path, format!("`{source}` {why}"))).ok()
}

/// One `jwt` entry, or `None` when it has problems (recorded).
fn issuer(path: &str, entry: Jwt, cel: &Cel, common: &Common, problems: &mut Problems) -> Option<Issuer> {
    let before = problems.0.len();
    let spec = &entry.issuer;
    validation::issuer_url(problems, &format!("{path}.issuer.url"), &spec.url);
    validation::discovery_url(problems, &format!("{path}.issuer.discoveryURL"), &spec.url, &spec.discovery_url);
    validation::audiences(
        problems,
        &format!("{path}.issuer.audiences"),
        &format!("{path}.issuer.audienceMatchPolicy"),
        &spec.audiences,
        &spec.audience_match_policy,
    );
    let ca_path = format!("{path}.issuer.certificateAuthority");
    let ca = validation::certificate_authority(problems, &ca_path, &spec.certificate_authority);
    if !ca.is_empty() {
        match &common.granted_ca {
            None => problems.add(
                &ca_path,
                "this validator's HTTPS trusts the CA bundle of its grants.ca-file (the host makes the connections), not this field: put these certificates in that file and set the setting granted-ca = \"file:<the same path>\" so that the load can check they are there",
            ),
            Some(granted) => {
                for (n, cert) in ca.iter().enumerate() {
                    if !granted.contains(cert) {
                        problems.add(
                            &ca_path,
                            format!(
                                "certificate {} of {} is not in granted-ca: add it to the file grants.ca-file names (and granted-ca reads)",
                                n + 1,
                                ca.len()
                            ),
                        );
                    }
                }
            }
        }
    }
    if let Some(egress) = &spec.egress_selector_type {
        problems.add(
            format!("{path}.issuer.egressSelectorType"),
            format!("{egress:?}: not supported: this validator has no egress selector, its HTTPS goes where grants.http allows; remove the field"),
        );
    }

    let mut uses_email_verified = false;

    // claimValidationRules
    let mut required = Vec::new();
    let mut claim_rules = Vec::new();
    let (mut claims_seen, mut expressions_seen) = (BTreeSet::new(), BTreeSet::new());
    for (i, rule) in entry.claim_validation_rules.iter().enumerate() {
        let at = format!("{path}.claimValidationRules[{i}]");
        match (rule.claim.is_empty(), rule.expression.is_empty()) {
            (false, false) => problems.add(&at, "claim and expression can't both be set"),
            (true, true) => problems.add(&at, "claim or expression is required"),
            (false, true) => {
                if !rule.message.is_empty() {
                    problems.add(format!("{at}.message"), "message can't be set when claim is set");
                }
                if !claims_seen.insert(rule.claim.clone()) {
                    problems.add(format!("{at}.claim"), format!("duplicate claim {:?}", rule.claim));
                }
                required.push(Required {
                    claim: rule.claim.clone(),
                    value: rule.required_value.clone(),
                    list_member: false,
                });
            }
            (true, false) => {
                if !rule.required_value.is_empty() {
                    problems.add(format!("{at}.requiredValue"), "requiredValue can't be set when expression is set");
                }
                if !expressions_seen.insert(rule.expression.clone()) {
                    problems.add(format!("{at}.expression"), format!("duplicate expression `{}`", rule.expression));
                    continue;
                }
                if let Some(expression) =
                    compile(cel, problems, &format!("{at}.expression"), &rule.expression, Scope::Claims, Want::Bool)
                {
                    uses_email_verified |= expression.uses_email_verified;
                    claim_rules.push(Rule { expression, message: rule.message.clone() });
                }
            }
        }
    }

    // claimMappings
    let mappings = &entry.claim_mappings;
    let mut uses_email = false;
    let username = match prefixed(cel, problems, &format!("{path}.claimMappings.username"), &mappings.username, true) {
        Some(Mapping::Claim(claim, prefix)) => Some(Username::Claim { claim, prefix }),
        Some(Mapping::Expression(e)) => {
            uses_email = e.uses_email;
            uses_email_verified |= e.uses_email_verified;
            Some(Username::Expression(e))
        }
        None => None,
    };
    let groups = match prefixed(cel, problems, &format!("{path}.claimMappings.groups"), &mappings.groups, false) {
        Some(Mapping::Claim(claim, prefix)) => Groups::Claim { claim, prefix },
        Some(Mapping::Expression(e)) => Groups::Expression(e),
        None => Groups::None,
    };
    let uid_path = format!("{path}.claimMappings.uid");
    let uid = match (mappings.uid.claim.is_empty(), mappings.uid.expression.is_empty()) {
        (false, false) => {
            problems.add(&uid_path, "claim and expression can't both be set");
            Uid::None
        }
        (false, true) => Uid::Claim(mappings.uid.claim.clone()),
        (true, false) => compile(
            cel,
            problems,
            &format!("{uid_path}.expression"),
            &mappings.uid.expression,
            Scope::Claims,
            Want::Any,
        )
        .map_or(Uid::None, Uid::Expression),
        (true, true) => Uid::None,
    };
    let mut extra = Vec::new();
    let mut keys = BTreeSet::new();
    for (i, mapping) in mappings.extra.iter().enumerate() {
        let at = format!("{path}.claimMappings.extra[{i}]");
        validation::extra_key(problems, &format!("{at}.key"), &mapping.key);
        if !keys.insert(mapping.key.clone()) {
            problems.add(format!("{at}.key"), format!("duplicate key {:?}", mapping.key));
            continue;
        }
        if mapping.value_expression.is_empty() {
            problems.add(format!("{at}.valueExpression"), "valueExpression is required");
            continue;
        }
        if let Some(e) = compile(
            cel,
            problems,
            &format!("{at}.valueExpression"),
            &mapping.value_expression,
            Scope::Claims,
            Want::Any,
        ) {
            uses_email_verified |= e.uses_email_verified;
            extra.push(Extra { key: mapping.key.clone(), expression: e });
        }
    }
    if uses_email && !uses_email_verified {
        problems.add(
            format!("{path}.claimMappings.username.expression"),
            format!(
                "`{}`: claims.email_verified must be used in claimMappings.username.expression or claimMappings.extra[*].valueExpression or claimValidationRules[*].expression when claims.email is used in claimMappings.username.expression",
                mappings.username.expression
            ),
        );
    }

    // userValidationRules
    let mut user_rules = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, rule) in entry.user_validation_rules.iter().enumerate() {
        let at = format!("{path}.userValidationRules[{i}].expression");
        if rule.expression.is_empty() {
            problems.add(&at, "expression is required");
            continue;
        }
        if !seen.insert(rule.expression.clone()) {
            problems.add(&at, format!("duplicate expression `{}`", rule.expression));
            continue;
        }
        if let Some(expression) = compile(cel, problems, &at, &rule.expression, Scope::User, Want::Bool) {
            user_rules.push(Rule { expression, message: rule.message.clone() });
        }
    }

    if problems.0.len() > before {
        return None;
    }
    let url = spec.url.clone();
    let discovery_url = if spec.discovery_url.is_empty() {
        format!("{}/.well-known/openid-configuration", url.strip_suffix('/').unwrap_or(&url))
    } else {
        spec.discovery_url.clone()
    };
    Some(
        Issuer {
            url,
            lenient_url: false,
            discovery_url,
            audiences: spec.audiences.clone(),
            algorithms: common.algorithms.clone(),
            times: Times::KUBE,
            username: username?,
            groups,
            uid,
            extra,
            required,
            claim_rules,
            user_rules,
            distributed: BTreeSet::new(),
            cel_claims: None,
        }
        .reading_claims(),
    )
}

enum Mapping {
    Claim(String, String),
    Expression(Expression),
}

/// kube-apiserver's `validatePrefixClaimOrExpression`.
fn prefixed(
    cel: &Cel,
    problems: &mut Problems,
    path: &str,
    m: &PrefixedClaimOrExpression,
    required: bool,
) -> Option<Mapping> {
    match (m.claim.is_empty(), m.expression.is_empty()) {
        (false, false) => {
            problems.add(path, "claim and expression can't both be set");
            None
        }
        (true, true) => {
            if required {
                problems.add(path, "claim or expression is required");
            }
            None
        }
        (true, false) => {
            if let Some(prefix) = &m.prefix {
                problems
                    .add(format!("{path}.prefix"), format!("{prefix:?}: prefix can't be set when expression is set"));
            }
            compile(cel, problems, &format!("{path}.expression"), &m.expression, Scope::Claims, Want::Any)
                .map(Mapping::Expression)
        }
        (false, true) => match &m.prefix {
            Some(prefix) => Some(Mapping::Claim(m.claim.clone(), prefix.clone())),
            None => {
                problems.add(
                    format!("{path}.prefix"),
                    "prefix is required when claim is set. It can be set to an empty string to disable prefixing",
                );
                None
            }
        },
    }
}
