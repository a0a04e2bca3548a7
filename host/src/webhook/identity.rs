//! Which identities a validator or login backend may assert: a grant like
//! every other, checked in the host on every answer.
//!
//! A plugin that decides who a token belongs to could name anyone, and a
//! few names mean far more than others: `system:masters` is cluster-admin,
//! `system:node:*` users are the kubelets, `system:serviceaccount:*` users
//! are pods. By default no validator may assert a username or group in the
//! namespaces Kubernetes and EKS reserve for themselves (`system:`, `eks:`,
//! `aws:`, `amazon:`, `iam:`), nor an extra attribute under
//! `authentication.kubernetes.io/` other than `credential-id`. The operator
//! grants exceptions per validator (`[validators.identities]`), and may
//! confine a validator to its own prefixes (`username-prefixes`,
//! `group-prefixes`), so one backend cannot speak for another's users.

use serde::Deserialize;

use super::review::UserInfo;
use crate::boundary::text;

/// Username and group prefixes reserved by Kubernetes (`system:`) and EKS
/// (`eks:`, `aws:`, `amazon:`, `iam:`).
pub const RESERVED_PREFIXES: &[&str] = &["system:", "eks:", "aws:", "amazon:", "iam:"];
/// Extra-attribute keys kube-apiserver sets itself, except the credential id
/// JWT authenticators report.
const RESERVED_EXTRA_PREFIX: &str = "authentication.kubernetes.io/";
const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// `[validators.identities]`, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IdentityGrants {
    /// Reserved usernames this validator may assert anyway: exact names, or
    /// prefixes ending in `*` (`system:node:*`).
    #[serde(default)]
    pub usernames: Vec<String>,
    /// Reserved groups this validator may assert anyway (as `usernames`).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Reserved extra-attribute keys this validator may assert anyway.
    #[serde(default)]
    pub extra: Vec<String>,
    /// When set, every username this validator asserts must start with one of
    /// these (e.g. `oidc:`).
    #[serde(default)]
    pub username_prefixes: Vec<String>,
    /// When set, every group this validator asserts must start with one of these.
    #[serde(default)]
    pub group_prefixes: Vec<String>,
}

/// A pattern of a grant: an exact name, or a prefix (`...*`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(field: &str, entry: &str) -> Result<Self, String> {
        if !text::is_clean_name(entry) {
            return Err(format!("identities.{field}: `{}` is empty or holds control characters", text::name(entry)));
        }
        match entry.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => {
                Err(format!("identities.{field}: `{entry}`: `*` is allowed only at the end"))
            }
            Some("") => Err(format!("identities.{field}: `*` alone would grant every name; list the prefixes")),
            Some(prefix) => Ok(Self::Prefix(prefix.to_string())),
            None if entry.contains('*') => {
                Err(format!("identities.{field}: `{entry}`: `*` is allowed only at the end"))
            }
            None => Ok(Self::Exact(entry.to_string())),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == name,
            Self::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }
}

/// The checked form of [`IdentityGrants`].
#[derive(Debug, Clone, Default)]
pub struct IdentityPolicy {
    usernames: Vec<Pattern>,
    groups: Vec<Pattern>,
    extra: Vec<String>,
    username_prefixes: Vec<String>,
    group_prefixes: Vec<String>,
}

/// An identity a validator asserted and may not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("it asserted {kind} `{value}`, {why}")]
pub struct Refusal {
    /// `username`, `group`, `extra attribute`, `uid`.
    pub kind: &'static str,
    /// What it asserted (escaped).
    pub value: String,
    /// Why that is refused and how to allow it.
    pub why: String,
}

impl IdentityPolicy {
    /// Check `grants`.
    ///
    /// # Errors
    ///
    /// A message naming the malformed entry.
    pub fn new(grants: &IdentityGrants) -> Result<Self, String> {
        let patterns = |field: &str, entries: &[String]| {
            entries.iter().map(|e| Pattern::parse(field, e)).collect::<Result<Vec<_>, _>>()
        };
        let prefixes = |field: &str, entries: &[String]| {
            for entry in entries {
                if !text::is_clean_name(entry) {
                    return Err(format!(
                        "identities.{field}: `{}` is empty or holds control characters",
                        text::name(entry)
                    ));
                }
            }
            Ok(entries.to_vec())
        };
        Ok(Self {
            usernames: patterns("usernames", &grants.usernames)?,
            groups: patterns("groups", &grants.groups)?,
            extra: prefixes("extra", &grants.extra)?,
            username_prefixes: prefixes("username-prefixes", &grants.username_prefixes)?,
            group_prefixes: prefixes("group-prefixes", &grants.group_prefixes)?,
        })
    }

    fn check_name(
        kind: &'static str,
        name: &str,
        granted: &[Pattern],
        confined: &[String],
        field: &str,
    ) -> Result<(), Refusal> {
        let refuse = |why: String| Refusal { kind, value: text::name(name).into_owned(), why };
        if name.is_empty() {
            return Err(refuse("an empty name".into()));
        }
        if name.chars().any(text::is_unsafe) {
            return Err(refuse("which holds control or invisible characters".into()));
        }
        if granted.iter().any(|p| p.matches(name)) {
            return Ok(());
        }
        if let Some(reserved) = RESERVED_PREFIXES.iter().find(|p| name.starts_with(**p)) {
            return Err(refuse(format!(
                "in the reserved `{reserved}` namespace, which this validator is not granted (allow it with \
                 [validators.identities] {field} = [\"{}\"])",
                text::name(name)
            )));
        }
        if !confined.is_empty() && !confined.iter().any(|p| name.starts_with(p.as_str())) {
            return Err(refuse(format!(
                "outside this validator's prefixes ({field}-prefixes: {})",
                confined.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    /// Whether the validator may assert `user`.
    ///
    /// # Errors
    ///
    /// The first name it may not assert, with what to grant.
    pub fn check(&self, user: &UserInfo) -> Result<(), Refusal> {
        Self::check_name("username", &user.username, &self.usernames, &self.username_prefixes, "usernames")?;
        for group in &user.groups {
            Self::check_name("group", group, &self.groups, &self.group_prefixes, "groups")?;
        }
        if user.uid.chars().any(text::is_unsafe) {
            return Err(Refusal {
                kind: "uid",
                value: text::name(&user.uid).into_owned(),
                why: "which holds control or invisible characters".into(),
            });
        }
        for (key, values) in &user.extra {
            let refuse =
                |why: &str| Refusal { kind: "extra attribute", value: text::name(key).into_owned(), why: why.into() };
            if key.is_empty()
                || key.chars().any(text::is_unsafe)
                || values.iter().any(|v| v.chars().any(text::is_unsafe))
            {
                return Err(refuse("which is empty or holds control or invisible characters"));
            }
            if key.starts_with(RESERVED_EXTRA_PREFIX) && key != CREDENTIAL_ID && !self.extra.contains(key) {
                return Err(refuse(
                    "which kube-apiserver reserves for itself (allow it with [validators.identities] extra = [...])",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    #[test]
    fn reserved_names_need_a_grant() {
        let none = IdentityPolicy::default();
        assert!(none.check(&user("alice", &["devs"])).is_ok());
        let admin = none.check(&user("system:admin", &[])).unwrap_err();
        assert_eq!(admin.kind, "username");
        assert!(admin.to_string().contains("reserved `system:` namespace"), "{admin}");
        assert!(admin.to_string().contains("usernames = [\"system:admin\"]"), "{admin}");
        let masters = none.check(&user("alice", &["devs", "system:masters"])).unwrap_err();
        assert!(masters.to_string().contains("group `system:masters`"), "{masters}");
        for reserved in ["eks:x", "aws:y", "amazon:z", "iam:w"] {
            assert!(none.check(&user(reserved, &[])).is_err(), "{reserved}");
        }
        let granted = IdentityPolicy::new(&IdentityGrants {
            usernames: vec!["system:node:*".into()],
            groups: vec!["system:masters".into(), "system:nodes".into()],
            ..IdentityGrants::default()
        })
        .unwrap();
        assert!(granted.check(&user("system:node:ip-10-0-0-1", &["system:nodes", "system:masters"])).is_ok());
        assert!(granted.check(&user("system:admin", &[])).is_err());
        assert!(granted.check(&user("a", &["system:bootstrappers"])).is_err());
    }

    #[test]
    fn a_validator_can_be_confined_to_its_prefixes() {
        let oidc = IdentityPolicy::new(&IdentityGrants {
            username_prefixes: vec!["oidc:".into()],
            group_prefixes: vec!["oidc:".into()],
            ..IdentityGrants::default()
        })
        .unwrap();
        assert!(oidc.check(&user("oidc:alice", &["oidc:devs"])).is_ok());
        let other = oidc.check(&user("ldap:alice", &[])).unwrap_err();
        assert!(other.to_string().contains("outside this validator's prefixes"), "{other}");
        assert!(oidc.check(&user("oidc:alice", &["devs"])).is_err());
    }

    #[test]
    fn control_characters_and_kube_extras_are_refused() {
        let none = IdentityPolicy::default();
        assert!(none.check(&user("ali\u{202e}ce", &[])).is_err());
        assert!(none.check(&user("alice", &["de\nvs"])).is_err());
        assert!(none.check(&user("", &[])).is_err());
        let mut extra = user("alice", &[]);
        extra.extra.insert("authentication.kubernetes.io/pod-name".into(), vec!["x".into()]);
        assert!(none.check(&extra).is_err());
        extra.extra.clear();
        extra.extra.insert(CREDENTIAL_ID.into(), vec!["JTI=1".into()]);
        assert!(none.check(&extra).is_ok());
    }

    #[test]
    fn malformed_grants_are_refused() {
        for bad in ["*", "sys*tem:", "", "a\nb"] {
            let grants = IdentityGrants { groups: vec![bad.into()], ..IdentityGrants::default() };
            assert!(IdentityPolicy::new(&grants).is_err(), "{bad:?}");
        }
    }
}
