//! {{name}}: a credbroker validator. It asks an OAuth 2.0 token introspection
//! endpoint (RFC 7662) about each bearer token: `POST {url}` with the form
//! `token=...`, authenticated as a client, answers
//! `{"active": true, "username": "ada", "groups": ["devs"]}`. Adapt the
//! answer to your service; keep the checks.
//!
//! Settings:
//! - `url`: the introspection endpoint, e.g. `https://idp.corp.example/oauth2/introspect` (grant its origin)
//! - `client-id`, `client-secret`: this webhook's client at the endpoint
//!   (`client-secret` as `env:NAME` or `file:PATH`)

use credbroker_sdk::{Error, ReviewOutcome, TokenReview, UserInfo, Validator, config, http};
use serde::Deserialize;

/// What the introspection endpoint answers (the fields used here).
#[derive(Deserialize)]
struct Introspection {
    active: bool,
    username: Option<String>,
    /// The subject, when there is no `username`.
    sub: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

struct {{type_name}};

impl Validator for {{type_name}} {
    fn validate(review: TokenReview) -> Result<ReviewOutcome, Error> {
        let url = config::require("url")?;
        let client_id = config::require("client-id")?;
        let client_secret = config::require_secret("client-secret")?;
        let response = http::Request::post(&url)
            .basic_auth(&http::form_encode(&client_id), &http::form_encode(&client_secret))
            .header("accept", "application/json")
            .form(&[("token", &review.token), ("token_type_hint", "access_token")])
            .send()?;
        outcome(response)
    }
}

/// The verdict in the endpoint's `response`. An inactive token is rejected
/// (a denial the API server caches); a failing endpoint is an error: 5xx
/// makes the webhook answer 503, which the API server retries.
fn outcome(response: http::Response) -> Result<ReviewOutcome, Error> {
    let answer: Introspection = response.error_for_status()?.json()?;
    if !answer.active {
        return Ok(ReviewOutcome::rejected("the token is not active"));
    }
    let username = answer
        .username
        .or(answer.sub)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| Error::failed("the introspection answer names no user (`username` or `sub`)"))?;
    Ok(ReviewOutcome::authenticated(UserInfo::new(username, answer.groups)))
}

credbroker_sdk::export_validator!({{type_name}});

// The logic is tested natively (`cargo test`): host calls only work inside
// credbroker, so the tests feed `outcome` the responses an endpoint gives.
#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> http::Response {
        http::Response { status, headers: Vec::new(), body: body.as_bytes().to_vec() }
    }

    #[test]
    fn an_active_token_is_its_user() {
        let verdict = outcome(response(200, r#"{"active":true,"username":"ada","groups":["devs"]}"#)).unwrap();
        assert_eq!(verdict, ReviewOutcome::authenticated(UserInfo::new("ada", vec!["devs".into()])));
        let by_subject = outcome(response(200, r#"{"active":true,"sub":"svc-build"}"#)).unwrap();
        assert_eq!(by_subject, ReviewOutcome::authenticated(UserInfo::new("svc-build", Vec::new())));
    }

    #[test]
    fn inactive_tokens_are_rejected_and_faults_are_errors() {
        assert_eq!(outcome(response(200, r#"{"active":false}"#)).unwrap(), ReviewOutcome::rejected("the token is not active"));
        assert!(matches!(outcome(response(200, r#"{"active":true}"#)), Err(Error::Failed(_))));
        assert!(matches!(outcome(response(401, "")), Err(Error::Denied(_))));
        assert!(matches!(outcome(response(502, "")), Err(Error::Unavailable(_))));
    }
}
