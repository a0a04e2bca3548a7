//! {{name}}: a credbroker provider. It exchanges an API key for a short-lived
//! Kubernetes token at a token service: `POST {url}/v1/token` with
//! `Authorization: Bearer {api-key}` and `{"cluster": "https://api-server"}`
//! answers `{"token": "...", "expiresIn": 600}`. Adapt the request and the
//! answer to your service; keep the checks.
//!
//! Settings:
//! - `url`: the token service, e.g. `https://tokens.corp.example` (grant its origin)
//! - `api-key`: the key; `env:NAME` or `file:PATH` keeps it out of config files

use credbroker_sdk::{Credential, CredentialRequest, Error, Provider, config, http, log};
use serde::{Deserialize, Serialize};

/// What the token service is asked.
#[derive(Serialize)]
struct TokenRequest<'a> {
    /// The API server the token is for, when kubectl says (`provideClusterInfo: true`).
    cluster: Option<&'a str>,
}

/// What the token service answers.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    token: String,
    /// Seconds the token is valid for.
    expires_in: i64,
}

struct {{type_name}};

impl Provider for {{type_name}} {
    fn get_credential(request: CredentialRequest) -> Result<Credential, Error> {
        let url = config::require("url")?;
        let api_key = config::require_secret("api-key")?;
        let cluster = request.cluster.as_ref().map(|cluster| cluster.server.as_str());
        let response = http::Request::post(&format!("{}/v1/token", url.trim_end_matches('/')))
            .bearer_auth(&api_key)
            .json(&TokenRequest { cluster })
            .send()?;
        let answer = read_answer(response)?;
        // Declared secret before anything could log it.
        log::mark_secret(&answer.token);
        log::info(&format!("got a token valid for {} s", answer.expires_in));
        Ok(Credential::token(answer.token).expires_in(answer.expires_in))
    }
}

/// The token in the service's `response`, checked. 401/403 become a denial,
/// 429 "slow down", 5xx "unavailable" (`error_for_status`).
fn read_answer(response: http::Response) -> Result<TokenAnswer, Error> {
    let answer: TokenAnswer = response.error_for_status()?.json()?;
    if answer.token.is_empty() {
        return Err(Error::failed("the token service answered an empty token"));
    }
    if answer.expires_in <= 0 {
        return Err(Error::failed(format!("the token service answered an expired token ({} s)", answer.expires_in)));
    }
    Ok(answer)
}

credbroker_sdk::export_provider!({{type_name}});

// The logic is tested natively (`cargo test`): host calls only work inside
// credbroker, so the tests feed `read_answer` the responses a service gives.
#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> http::Response {
        http::Response { status, headers: Vec::new(), body: body.as_bytes().to_vec() }
    }

    #[test]
    fn a_token_and_its_lifetime() {
        let answer = read_answer(response(200, r#"{"token":"t0k3n","expiresIn":600}"#)).unwrap();
        assert_eq!(answer, TokenAnswer { token: "t0k3n".into(), expires_in: 600 });
    }

    #[test]
    fn refusals_and_faults_are_told_apart() {
        assert!(matches!(read_answer(response(401, "")), Err(Error::Denied(_))));
        assert!(matches!(read_answer(response(429, "")), Err(Error::Throttled(_))));
        assert!(matches!(read_answer(response(503, "")), Err(Error::Unavailable(_))));
        let error = read_answer(response(200, r#"{"token":""}"#)).unwrap_err();
        assert_eq!(error.message(), "the response body lacks what is expected: missing field `expiresIn`");
        let error = read_answer(response(200, r#"{"token":"","expiresIn":60}"#)).unwrap_err();
        assert_eq!(error, Error::failed("the token service answered an empty token"));
    }
}
