//! A test-only login backend. The `behavior` setting picks what it does:
//! `login-as` accepts every password as `username` in `groups`;
//! `login-quoting` rejects with a reason that quotes the password.

use credbroker_sdk::{Error, Login, LoginOutcome, UserInfo, config};

struct LoginProbe;

fn groups() -> Vec<String> {
    config::get("groups").unwrap_or_default().split(',').filter(|g| !g.is_empty()).map(str::to_string).collect()
}

impl Login for LoginProbe {
    fn authenticate(username: String, password: String) -> Result<LoginOutcome, Error> {
        match config::require("behavior")?.as_str() {
            "login-as" => Ok(LoginOutcome::Authenticated(UserInfo::new(config::require("username")?, groups()))),
            "login-quoting" => Ok(LoginOutcome::Rejected(format!("{username} typed {password}, which is wrong"))),
            other => Err(Error::misconfigured(format!("unknown behavior `{other}`"))),
        }
    }

    fn lookup(username: String) -> Result<Option<UserInfo>, Error> {
        Ok(Some(UserInfo::new(username, groups())))
    }
}

credbroker_sdk::export_login!(LoginProbe);
