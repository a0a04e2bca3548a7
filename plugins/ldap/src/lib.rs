//! The `ldap` plugin, both halves of an LDAP login.
//!
//! **As a provider** (`credbroker get --provider ldap`) it asks for the user's
//! LDAP password (hidden prompt, or an `env:`/`file:` setting), POSTs it once to
//! the `credbroker serve` login endpoint, and hands kubectl the short-lived token
//! it gets back. The password never travels inside a bearer token.
//!
//! Provider settings: `login-url` (required, e.g.
//! `https://credbroker.corp:8443/v1/login/corp-ldap`), `username` (else asked),
//! `password` (else asked when interactive).
//!
//! **As a login backend** (`credbroker serve`, a validator with `plugin = "ldap"`)
//! it binds as a service account, finds the user, binds as the user to check the
//! password, and collects groups.
//!
//! Backend settings: `url` (`ldaps://…` or `ldap://…`, upgraded with StartTLS),
//! `bind-dn` and `bind-password` (service account; anonymous search without),
//! `user-base`, `user-filter` (default `(&(objectClass=person)(uid={}))`, `{}` is
//! the escaped username), `username-attribute` (default `uid`),
//! `uid-attribute` (default `entryUUID`), and groups either from
//! `memberOf` (`group-mode = memberof`, the default) or a search
//! (`group-mode = search`, `group-base`, `group-filter` default
//! `(&(objectClass=groupOfNames)(member={}))` with the user's DN, `group-name-attribute`
//! default `cn`).

use credbroker_sdk::ldap::{Connection, Entry, Search};
use credbroker_sdk::{
    Credential, CredentialRequest, Error, HostError, Login, LoginOutcome, Provider, UserInfo, config, http,
    ldap_filter, log, prompt,
};

struct Ldap;

// ---- provider: log in at credbroker serve ----

impl Provider for Ldap {
    fn get_credential(request: CredentialRequest) -> Result<Credential, Error> {
        let url = config::require("login-url")?;
        let username = match config::get("username").filter(|u| !u.is_empty()) {
            Some(username) => username,
            None if request.interactive => prompt::text("LDAP username:")?,
            None => {
                return Err(Error::misconfigured(
                    "no username: set `username` (e.g. --set username=alice), or run kubectl interactively",
                ));
            }
        };
        let password = match config::get("password").filter(|p| !p.is_empty()) {
            Some(password) => password,
            None if request.interactive => prompt::secret(&format!("LDAP password for {username}:"))?,
            None => {
                return Err(Error::misconfigured(
                    "no password and not interactive: set `password` to env:VARIABLE or file:PATH, \
                     or run kubectl from a terminal (interactiveMode: IfAvailable)",
                ));
            }
        };
        log::mark_secret(&password);
        let body = serde_json::json!({ "username": username, "password": password });
        let response = http::Request::post(&url).json(&body).header("accept", "application/json").send()?;
        let answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
        let message = answer["error"].as_str().unwrap_or("no reason given").to_string();
        match response.status {
            200 => {}
            401 => return Err(Error::denied("invalid username or password")),
            429 => return Err(Error::unavailable(format!("too many failed logins: {message}"))),
            500..=599 => return Err(Error::unavailable(format!("the login service failed: {message}"))),
            status => return Err(Error::failed(format!("the login service answered {status}: {message}"))),
        }
        let token =
            answer["token"].as_str().ok_or_else(|| Error::failed("the login service answered without a token"))?;
        log::mark_secret(token);
        let credential = Credential::token(token);
        Ok(match answer["expiresAt"].as_i64() {
            Some(expires_at) => credential.expires_at(expires_at),
            None => credential,
        })
    }
}

// ---- login backend: check passwords against the directory ----

struct Directory {
    connection: Connection,
    user_base: String,
}

fn setting(key: &str, default: &str) -> String {
    config::get(key).filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

impl Directory {
    /// Connect and bind as the service account.
    fn open() -> Result<Self, Error> {
        let connection = Connection::open(&config::require("url")?)?;
        if let Some(dn) = config::get("bind-dn").filter(|d| !d.is_empty()) {
            connection.bind(&dn, &config::require("bind-password")?)?;
        }
        Ok(Self { connection, user_base: config::require("user-base")? })
    }

    /// The one entry for `username`, if any.
    fn find_user(&self, username: &str) -> Result<Option<Entry>, Error> {
        if username.is_empty() || username.len() > 256 || username.chars().any(char::is_control) {
            return Ok(None);
        }
        let filter = ldap_filter::fill(&setting("user-filter", "(&(objectClass=person)(uid={}))"), username);
        let search = Search::subtree(&self.user_base, &filter).size_limit(2).attributes(&[
            &setting("username-attribute", "uid"),
            &setting("uid-attribute", "entryUUID"),
            "memberOf",
        ]);
        let mut found = self.connection.search(&search)?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(Error::misconfigured(format!("user-filter matches more than one entry for `{username}`"))),
        }
    }

    fn groups(&self, user: &Entry) -> Result<Vec<String>, Error> {
        let mut groups: Vec<String> = match setting("group-mode", "memberof").as_str() {
            "memberof" => user.values("memberOf").iter().map(|dn| first_rdn_value(dn)).collect(),
            "search" => {
                let filter =
                    ldap_filter::fill(&setting("group-filter", "(&(objectClass=groupOfNames)(member={}))"), &user.dn);
                let name = setting("group-name-attribute", "cn");
                let base =
                    config::get("group-base").filter(|b| !b.is_empty()).unwrap_or_else(|| self.user_base.clone());
                self.connection
                    .search(&Search::subtree(&base, &filter).attributes(&[&name]))?
                    .iter()
                    .filter_map(|g| g.first(&name).map(str::to_string))
                    .collect()
            }
            other => return Err(Error::misconfigured(format!("group-mode must be memberof or search, not `{other}`"))),
        };
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    fn user_info(&self, user: &Entry, asked: &str) -> Result<UserInfo, Error> {
        let username = user.first(&setting("username-attribute", "uid")).unwrap_or(asked).to_string();
        Ok(UserInfo {
            uid: user.first(&setting("uid-attribute", "entryUUID")).map(str::to_string),
            groups: self.groups(user)?,
            username,
            extra: Vec::new(),
        })
    }
}

/// `devs` of `cn=devs,ou=groups,dc=corp`.
fn first_rdn_value(dn: &str) -> String {
    let first = dn.split(',').next().unwrap_or(dn);
    first.split_once('=').map_or(first, |(_, v)| v).trim().to_string()
}

impl Login for Ldap {
    fn authenticate(username: String, password: String) -> Result<LoginOutcome, Error> {
        if password.is_empty() {
            return Ok(LoginOutcome::Rejected("empty password".into()));
        }
        let directory = Directory::open()?;
        let Some(user) = directory.find_user(&username)? else {
            return Ok(LoginOutcome::Rejected(format!("no user `{username}`")));
        };
        // Check the password with a second connection, so the service
        // account's bind stays in place for the group lookup.
        let check = Connection::open(&config::require("url")?)?;
        match check.try_bind(&user.dn, &password) {
            Ok(true) => {}
            Ok(false) => return Ok(LoginOutcome::Rejected(format!("wrong password for `{username}`"))),
            Err(HostError::Invalid(reason)) => return Ok(LoginOutcome::Rejected(reason)),
            Err(other) => return Err(other.into()),
        }
        Ok(LoginOutcome::Authenticated(directory.user_info(&user, &username)?))
    }

    fn lookup(username: String) -> Result<Option<UserInfo>, Error> {
        let directory = Directory::open()?;
        match directory.find_user(&username)? {
            Some(user) => Ok(Some(directory.user_info(&user, &username)?)),
            None => Ok(None),
        }
    }
}

credbroker_sdk::export_provider!(Ldap);
credbroker_sdk::export_login!(Ldap);

#[cfg(test)]
mod tests {
    use super::first_rdn_value;

    #[test]
    fn group_names_come_from_the_first_rdn() {
        assert_eq!(first_rdn_value("cn=devs,ou=groups,dc=corp"), "devs");
        assert_eq!(first_rdn_value("CN=Site Admins,OU=Groups"), "Site Admins");
    }
}
