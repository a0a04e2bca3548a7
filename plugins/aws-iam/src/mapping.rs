//! From an AWS identity to a Kubernetes user, with the aws-auth ConfigMap's
//! `mapRoles`, `mapUsers` and `mapAccounts`, and its templates.
//!
//! Unlike aws-iam-authenticator, a `rolearn` may keep the role's path (as IAM
//! shows the ARN): STS names an assumed role without its path, so roles are
//! matched by account and name.

use credbroker_sdk::{Error, UserInfo, config};
use serde::Deserialize;

use super::verify::Identity;

/// One `mapRoles` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub struct RoleMapping {
    /// The role, with or without its path.
    pub rolearn: String,
    /// Username template.
    pub username: String,
    /// Group templates.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One `mapUsers` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub struct UserMapping {
    /// The IAM user.
    pub userarn: String,
    /// Username template.
    pub username: String,
    /// Group templates.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// (partition, account, role name) of a role ARN, path dropped.
fn role_key(arn: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, partition, "iam", _, account, resource] = parts.as_slice() else { return None };
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    Some((partition.to_string(), account.to_string(), name.to_string()))
}

/// Fill `{{AccountID}}`, `{{SessionName}}` (with `@` as `-`), `{{SessionNameRaw}}`
/// and `{{AccessKeyID}}`.
pub fn render(template: &str, identity: &Identity) -> String {
    template
        .replace("{{AccountID}}", &identity.account)
        .replace("{{SessionNameRaw}}", &identity.session_name)
        .replace("{{SessionName}}", &identity.session_name.replace('@', "-"))
        .replace("{{AccessKeyID}}", &identity.access_key_id)
}

fn json_setting<T: for<'de> Deserialize<'de>>(key: &str) -> Result<Vec<T>, Error> {
    match config::get(key).filter(|v| !v.trim().is_empty()) {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            Error::misconfigured(format!("setting `{key}` must be a JSON list like the aws-auth ConfigMap's: {e}"))
        }),
    }
}

/// The configured mappings, parsed.
#[derive(Debug)]
pub struct Mappings {
    roles: Vec<((String, String, String), RoleMapping)>,
    users: Vec<UserMapping>,
    accounts: Vec<String>,
}

static MAPPINGS: std::sync::OnceLock<Mappings> = std::sync::OnceLock::new();

/// The mappings of the settings, parsed once (in the validator's setup, or
/// by the first review on a host that does not run setups).
///
/// # Errors
///
/// [`Error::Misconfigured`] for unreadable mappings.
pub fn mappings() -> Result<&'static Mappings, Error> {
    if let Some(mappings) = MAPPINGS.get() {
        return Ok(mappings);
    }
    let roles = json_setting::<RoleMapping>("map-roles")?
        .into_iter()
        .map(|m| match role_key(&m.rolearn) {
            Some(key) => Ok((key, m)),
            None => Err(Error::misconfigured(format!("map-roles: `{}` is not a role ARN", m.rolearn))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let parsed = Mappings {
        roles,
        users: json_setting("map-users")?,
        accounts: config::get("map-accounts")
            .unwrap_or_default()
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect(),
    };
    Ok(MAPPINGS.get_or_init(|| parsed))
}

/// The Kubernetes user for `identity`, or `None` when nothing maps it.
///
/// # Errors
///
/// [`Error::Misconfigured`] for unreadable mappings.
pub fn map(identity: &Identity) -> Result<Option<UserInfo>, Error> {
    let Mappings { roles, users, accounts } = mappings()?;
    let found = match role_key(&identity.canonical_arn) {
        Some(key) => roles.iter().find(|(k, _)| *k == key).map(|(_, m)| (&m.username, &m.groups)),
        None => users
            .iter()
            .find(|m| m.userarn.eq_ignore_ascii_case(&identity.canonical_arn))
            .map(|m| (&m.username, &m.groups)),
    };
    let (username, groups) = match found {
        Some((username, groups)) => (render(username, identity), groups.iter().map(|g| render(g, identity)).collect()),
        None if accounts.contains(&identity.account) => (identity.canonical_arn.clone(), Vec::new()),
        None => return Ok(None),
    };
    let mut extra = vec![
        ("arn".to_string(), vec![identity.arn.clone()]),
        ("canonicalArn".to_string(), vec![identity.canonical_arn.clone()]),
        ("sessionName".to_string(), vec![identity.session_name.clone()]),
        ("accessKeyId".to_string(), vec![identity.access_key_id.clone()]),
        ("principalId".to_string(), vec![identity.user_id.clone()]),
    ];
    extra.retain(|(_, values)| values.iter().all(|v| !v.is_empty()));
    Ok(Some(UserInfo {
        username,
        uid: Some(format!("aws-iam-authenticator:{}:{}", identity.account, identity.user_id)),
        groups,
        extra,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assumed() -> Identity {
        Identity {
            arn: "arn:aws:sts::123456789012:assumed-role/k8s-admins/alice@corp".into(),
            canonical_arn: "arn:aws:iam::123456789012:role/k8s-admins".into(),
            account: "123456789012".into(),
            user_id: "AROAEXAMPLE".into(),
            session_name: "alice@corp".into(),
            access_key_id: "ASIAEXAMPLE".into(),
        }
    }

    #[test]
    fn templates_fill_like_aws_iam_authenticator() {
        let id = assumed();
        assert_eq!(render("admin:{{SessionName}}", &id), "admin:alice-corp");
        assert_eq!(
            render("{{SessionNameRaw}}/{{AccountID}}/{{AccessKeyID}}", &id),
            "alice@corp/123456789012/ASIAEXAMPLE"
        );
    }

    #[test]
    fn role_paths_do_not_stop_a_match() {
        assert_eq!(role_key("arn:aws:iam::123456789012:role/teams/k8s-admins"), role_key(&assumed().canonical_arn));
        assert_ne!(role_key("arn:aws:iam::999999999999:role/k8s-admins"), role_key(&assumed().canonical_arn));
        assert_eq!(role_key("arn:aws:iam::1:user/bob"), None);
    }
}
