//! {{name}}: a credbroker login backend. `credbroker serve` asks it to check
//! passwords (`POST /v1/login/NAME`) and issues its own short-lived tokens,
//! and asks it again about the user while those tokens live. It checks them
//! at a user directory's HTTP API:
//! - `POST {url}/v1/authenticate` with `{"username", "password"}` answers
//!   200 `{"username": "ada", "groups": ["devs"]}`, or 401 for a wrong password;
//! - `GET {url}/v1/users?name=ada` answers the same user, or 404 when gone.
//!
//! Adapt the requests and answers to your directory; keep the checks.
//!
//! Settings:
//! - `url`: the directory, e.g. `https://directory.corp.example` (grant its origin)
//! - `api-key`: this webhook's key at the directory (`env:NAME` or `file:PATH`)

use credbroker_sdk::{Error, Login, LoginOutcome, UserInfo, config, http, log};
use serde::{Deserialize, Serialize};

/// What the directory is asked to check.
#[derive(Serialize)]
struct Check<'a> {
    username: &'a str,
    password: &'a str,
}

/// A user, as the directory answers.
#[derive(Deserialize)]
struct User {
    username: String,
    #[serde(default)]
    groups: Vec<String>,
}

struct {{type_name}};

/// The directory's base URL (without a trailing `/`) and this webhook's key.
fn directory() -> Result<(String, String), Error> {
    let url = config::require("url")?;
    Ok((url.trim_end_matches('/').to_string(), config::require_secret("api-key")?))
}

impl Login for {{type_name}} {
    fn authenticate(username: String, password: String) -> Result<LoginOutcome, Error> {
        log::mark_secret(&password);
        let (url, api_key) = directory()?;
        let response = http::Request::post(&format!("{url}/v1/authenticate"))
            .bearer_auth(&api_key)
            .json(&Check { username: &username, password: &password })
            .send()?;
        login_outcome(response)
    }

    fn lookup(username: String) -> Result<Option<UserInfo>, Error> {
        let (url, api_key) = directory()?;
        let response = http::Request::get(&format!("{url}/v1/users"))
            .query(&[("name", &username)])
            .bearer_auth(&api_key)
            .send()?;
        current_user(response)
    }
}

/// The verdict on a login. A wrong password is a rejection, not an error (the
/// client is told only "invalid username or password"); a failing directory
/// is an error (the client is asked to retry).
fn login_outcome(response: http::Response) -> Result<LoginOutcome, Error> {
    if response.status == 401 {
        return Ok(LoginOutcome::Rejected("the directory refused the password".into()));
    }
    let user: User = response.error_for_status()?.json()?;
    Ok(LoginOutcome::Authenticated(UserInfo::new(user.username, user.groups)))
}

/// The user as of now, or `None` when the directory no longer has them.
fn current_user(response: http::Response) -> Result<Option<UserInfo>, Error> {
    if response.status == 404 {
        return Ok(None);
    }
    let user: User = response.error_for_status()?.json()?;
    Ok(Some(UserInfo::new(user.username, user.groups)))
}

credbroker_sdk::export_login!({{type_name}});

// The logic is tested natively (`cargo test`): host calls only work inside
// credbroker, so the tests feed it the responses a directory gives.
#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> http::Response {
        http::Response { status, headers: Vec::new(), body: body.as_bytes().to_vec() }
    }

    #[test]
    fn a_right_password_is_the_user_a_wrong_one_a_rejection() {
        let ada = UserInfo::new("ada", vec!["devs".into()]);
        let verdict = login_outcome(response(200, r#"{"username":"ada","groups":["devs"]}"#)).unwrap();
        assert_eq!(verdict, LoginOutcome::Authenticated(ada));
        assert!(matches!(login_outcome(response(401, "")).unwrap(), LoginOutcome::Rejected(_)));
        assert!(matches!(login_outcome(response(503, "")), Err(Error::Unavailable(_))));
    }

    #[test]
    fn users_are_looked_up_until_they_are_gone() {
        let found = current_user(response(200, r#"{"username":"ada"}"#)).unwrap();
        assert_eq!(found, Some(UserInfo::new("ada", Vec::new())));
        assert_eq!(current_user(response(404, "")).unwrap(), None);
        assert!(matches!(current_user(response(429, "")), Err(Error::Throttled(_))));
    }
}
