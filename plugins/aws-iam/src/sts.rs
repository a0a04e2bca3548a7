//! The calls the credential chain makes, over the host's `http` capability:
//! STS AssumeRole (SigV4-signed POST) and AssumeRoleWithWebIdentity
//! (unsigned), the SSO portal's GetRoleCredentials, and the container
//! credentials endpoint. Each answer's keys are marked secret at once.

use credbroker_sdk::{Error, http, log};
use serde_json::Value;

use crate::chain::{RoleRequest, SsoRequest, Temporary, WebIdentityRequest, parse_time};
use crate::sigv4::{self, Credentials, Endpoint, SigningTime};

/// The text of `<tag>...</tag>` in an XML document.
pub fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..end])
}

fn secret(credentials: &Credentials) {
    log::mark_secret(&credentials.secret_access_key);
    if let Some(token) = &credentials.session_token {
        log::mark_secret(token);
    }
}

/// The `<Credentials>` of an STS answer to `action`, or STS's error.
fn sts_answer(action: &str, response: &http::Response, about: &str) -> Result<Temporary, Error> {
    let text = response.text()?;
    if !response.is_success() {
        let code = xml_text(&text, "Code").unwrap_or("unknown");
        let message = xml_text(&text, "Message").unwrap_or("");
        return Err(match (response.status, code) {
            (_, "Throttling") => Error::throttled(format!("{action}: {message}")),
            (500..=599, _) => Error::unavailable(format!("{action}: STS answered {}", response.status)),
            _ => Error::denied(format!("{action} {about}: {code}: {message}")),
        });
    }
    let field = |tag: &str| {
        xml_text(&text, tag)
            .map(str::to_string)
            .ok_or_else(|| Error::failed(format!("{action} answered without {tag}")))
    };
    let credentials = Credentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: Some(field("SessionToken")?),
    };
    secret(&credentials);
    Ok(Temporary { credentials, expires_at: xml_text(&text, "Expiration").and_then(parse_time) })
}

fn form(fields: &[(&str, &str)]) -> String {
    fields.iter().map(|(k, v)| format!("{k}={}", sigv4::uri_encode(v))).collect::<Vec<_>>().join("&")
}

/// STS AssumeRole signed with `base` at `endpoint`.
///
/// # Errors
///
/// STS's refusal (denied), throttling, or an unreachable STS.
pub fn assume_role(
    base: &Credentials,
    endpoint: &Endpoint,
    signing_region: &str,
    request: &RoleRequest,
    now: u64,
) -> Result<Temporary, Error> {
    let duration = request.duration_seconds.unwrap_or(900).to_string();
    let mut fields = vec![
        ("Action", "AssumeRole"),
        ("Version", "2011-06-15"),
        ("RoleArn", request.role_arn.as_str()),
        ("RoleSessionName", request.session_name.as_str()),
        ("DurationSeconds", duration.as_str()),
    ];
    if let Some(external_id) = &request.external_id {
        fields.push(("ExternalId", external_id));
    }
    if let Some((serial, code)) = &request.mfa {
        fields.push(("SerialNumber", serial));
        fields.push(("TokenCode", code));
    }
    let body = form(&fields);
    let headers = sigv4::sign_post(base, &endpoint.host, signing_region, "sts", &body, &SigningTime::at(now));
    let mut post = http::Request::post(&format!("{}/", endpoint.url)).body(body);
    for (name, value) in &headers {
        post = post.header(name, value);
    }
    sts_answer("AssumeRole", &post.send()?, &request.role_arn)
}

/// STS AssumeRoleWithWebIdentity at `endpoint` (unsigned: the token is the proof).
///
/// # Errors
///
/// STS's refusal (e.g. `InvalidIdentityToken`), throttling, or an unreachable STS.
pub fn assume_role_with_web_identity(endpoint: &Endpoint, request: &WebIdentityRequest) -> Result<Temporary, Error> {
    let body = form(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", &request.role_arn),
        ("RoleSessionName", &request.session_name),
        ("WebIdentityToken", &request.token),
    ]);
    let response = http::Request::post(&format!("{}/", endpoint.url))
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .body(body)
        .send()?;
    sts_answer("AssumeRoleWithWebIdentity", &response, &request.role_arn)
}

fn json_credentials(value: &Value, keys: [&str; 3], what: &str) -> Result<Credentials, Error> {
    let field = |key: &str| {
        value[key]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Error::failed(format!("{what} answered without {key}")))
    };
    let credentials = Credentials {
        access_key_id: field(keys[0])?,
        secret_access_key: field(keys[1])?,
        session_token: Some(field(keys[2])?),
    };
    secret(&credentials);
    Ok(credentials)
}

/// The SSO portal's GetRoleCredentials at `portal` (`https://portal.sso.REGION.amazonaws.com`).
///
/// # Errors
///
/// A rejected token (denied, with `aws sso login`), a role the user may not
/// use, or an unreachable portal.
pub fn sso_role_credentials(portal: &str, request: &SsoRequest) -> Result<Temporary, Error> {
    let url = format!(
        "{}/federation/credentials?account_id={}&role_name={}",
        portal.trim_end_matches('/'),
        sigv4::uri_encode(&request.account_id),
        sigv4::uri_encode(&request.role_name)
    );
    let response = http::Request::get(&url)
        .header("x-amz-sso_bearer_token", &request.access_token)
        .header("accept", "application/json")
        .send()?;
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let message = body["message"].as_str().unwrap_or_default();
    match response.status {
        200 => {}
        401 => {
            return Err(Error::denied(format!(
                "the SSO portal rejected the cached login ({message}); {}",
                request.login_hint
            )));
        }
        403 => {
            return Err(Error::denied(format!(
                "the SSO portal refused role {} in account {} ({message})",
                request.role_name, request.account_id
            )));
        }
        429 => return Err(Error::throttled(format!("the SSO portal: {message}"))),
        500..=599 => return Err(Error::unavailable(format!("the SSO portal answered {}", response.status))),
        status => return Err(Error::failed(format!("the SSO portal answered {status}: {message}"))),
    }
    let role = &body["roleCredentials"];
    let credentials = json_credentials(role, ["accessKeyId", "secretAccessKey", "sessionToken"], "GetRoleCredentials")?;
    Ok(Temporary { credentials, expires_at: role["expiration"].as_u64().map(|ms| ms / 1000) })
}

/// The container credentials endpoint (ECS task role, EKS Pod Identity).
///
/// # Errors
///
/// A refusal or an unreachable endpoint.
pub fn container_credentials(url: &str, authorization: Option<&str>) -> Result<Temporary, Error> {
    let mut request = http::Request::get(url).header("accept", "application/json");
    if let Some(authorization) = authorization {
        log::mark_secret(authorization);
        request = request.header("authorization", authorization);
    }
    let response = request.send()?;
    if !response.is_success() {
        return Err(match response.status {
            500..=599 => Error::unavailable(format!("the container credentials endpoint answered {}", response.status)),
            status => Error::denied(format!("the container credentials endpoint answered {status}")),
        });
    }
    let body: Value = serde_json::from_slice(&response.body)
        .map_err(|e| Error::failed(format!("the container credentials endpoint answered no JSON: {e}")))?;
    let credentials = json_credentials(&body, ["AccessKeyId", "SecretAccessKey", "Token"], "the container endpoint")?;
    Ok(Temporary { credentials, expires_at: body["Expiration"].as_str().and_then(parse_time) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_fields_are_found() {
        let xml = "<AssumeRoleResult><Credentials><AccessKeyId>ASIA</AccessKeyId></Credentials></AssumeRoleResult>";
        assert_eq!(xml_text(xml, "AccessKeyId"), Some("ASIA"));
        assert_eq!(xml_text(xml, "SessionToken"), None);
    }

    #[test]
    fn forms_are_encoded_for_sigv4() {
        assert_eq!(
            form(&[("RoleArn", "arn:aws:iam::1:role/a b"), ("X", "=")]),
            "RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b&X=%3D"
        );
    }
}
