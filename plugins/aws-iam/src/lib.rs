//! The `aws-iam` plugin: EKS-style IAM authentication, wire-compatible with
//! aws-iam-authenticator on both sides.
//!
//! **Provider** (`credbroker get --provider aws-iam`): the token is
//! `k8s-aws-v1.` + base64url(a SigV4-presigned STS GetCallerIdentity URL whose
//! signed headers include `x-k8s-aws-id: CLUSTER`), valid 15 minutes (the
//! ExecCredential says 14); the STS host is the regional endpoint of the
//! region's partition, as botocore picks it ([`partitions`]). Settings:
//! `cluster-id` (required), `region`
//! (default `us-east-1`), credentials as `access-key-id`, `secret-access-key`
//! and `session-token` (use `env:`/`file:`), or `credentials-file` (a granted
//! file in the AWS shared-credentials format) with `profile` (default
//! `default`); `role-arn` to assume first (with `session-name`, default
//! `credbroker`); `sts-endpoint` to use another STS URL (e.g. a VPC endpoint),
//! signed as botocore signs it (host in lower case, no `:443`).
//!
//! **Validator** (`credbroker serve`): checks the token like
//! aws-iam-authenticator (length, prefix, encoding, https, an STS host of the
//! partition, path, parameters, action, signed cluster header, age), replays
//! the GET to STS with this cluster's id, and maps the caller's ARN to a
//! Kubernetes user with `map-roles`, `map-users` (JSON lists in the aws-auth
//! ConfigMap's shape) and `map-accounts`. Settings: `cluster-id` (required),
//! `partition` (`aws`), `sts-hosts` (extra allowed STS hosts, comma-separated),
//! `map-roles`, `map-users`, `map-accounts`.

pub mod mapping;
pub mod partitions;
pub mod sigv4;
pub mod verify;

use credbroker_sdk::{
    Credential, CredentialRequest, Error, Provider, ReviewOutcome, TokenReview, Validator, config, files, http, log,
};

use self::sigv4::{Credentials, Endpoint, SigningTime};

/// Tokens are prefixed with this.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

struct AwsIam;

fn now() -> u64 {
    u64::try_from(credbroker_sdk::now_unix()).unwrap_or(0)
}

/// The credentials to sign with, from settings or a shared-credentials file.
fn base_credentials() -> Result<Credentials, Error> {
    if let Some(access_key_id) = config::get("access-key-id").filter(|k| !k.is_empty()) {
        let credentials = Credentials {
            access_key_id,
            secret_access_key: config::require("secret-access-key")?,
            session_token: config::get("session-token").filter(|t| !t.is_empty()),
        };
        log::mark_secret(&credentials.secret_access_key);
        return Ok(credentials);
    }
    if let Some(path) = config::get("credentials-file").filter(|p| !p.is_empty()) {
        let profile = config::get("profile").unwrap_or_else(|| "default".into());
        let text = files::read_to_string(&path)?;
        return shared_credentials(&text, &profile).ok_or_else(|| {
            Error::misconfigured(format!(
                "{path} has no complete [{profile}] (aws_access_key_id and aws_secret_access_key)"
            ))
        });
    }
    Err(Error::misconfigured(
        "no AWS credentials: set access-key-id and secret-access-key (e.g. env:AWS_ACCESS_KEY_ID), \
         or credentials-file (granted under grants.files) with profile",
    ))
}

/// One profile of an AWS shared-credentials file (INI).
pub fn shared_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
        } else if in_profile && let Some((k, v)) = line.split_once('=') {
            let value = Some(v.trim().to_string());
            match k.trim() {
                "aws_access_key_id" => key = value,
                "aws_secret_access_key" => secret = value,
                "aws_session_token" => token = value,
                _ => {}
            }
        }
    }
    Some(Credentials { access_key_id: key?, secret_access_key: secret?, session_token: token })
}

/// The STS endpoint to sign for and the region to sign with: `sts-endpoint`
/// if set, else the regional endpoint of `region`'s partition (as botocore
/// picks it).
fn sts_endpoint(region: &str) -> Result<(Endpoint, String), Error> {
    if !partitions::valid_region_name(region) {
        return Err(Error::misconfigured(format!(
            "region {region:?} is no region name (letters, digits and -, like eu-west-1)"
        )));
    }
    match config::get("sts-endpoint").filter(|e| !e.is_empty()) {
        Some(url) => {
            let endpoint =
                Endpoint::parse(&url).map_err(|e| Error::misconfigured(format!("sts-endpoint {url:?}: {e}")))?;
            Ok((endpoint, region.to_string()))
        }
        None => {
            let (host, signing_region) = partitions::sts_host(region);
            let endpoint = Endpoint::parse(&format!("https://{host}"))
                .map_err(|e| Error::misconfigured(format!("region {region:?}: {e}")))?;
            Ok((endpoint, signing_region.to_string()))
        }
    }
}

/// The text of `<tag>...</tag>` in an XML document.
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..end])
}

/// STS AssumeRole over the http capability: temporary credentials for `role_arn`.
fn assume_role(base: &Credentials, region: &str, role_arn: &str) -> Result<Credentials, Error> {
    let (endpoint, signing_region) = sts_endpoint(region)?;
    let session = config::get("session-name").unwrap_or_else(|| "credbroker".into());
    let body = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName={}&DurationSeconds=900",
        sigv4::uri_encode(role_arn),
        sigv4::uri_encode(&session)
    );
    let headers = sigv4::sign_post(base, &endpoint.host, &signing_region, "sts", &body, &SigningTime::at(now()));
    let mut request = http::Request::post(&format!("{}/", endpoint.url)).body(body);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let response = request.send()?;
    let text = response.text()?;
    if !response.is_success() {
        let code = xml_text(&text, "Code").unwrap_or("unknown");
        let message = xml_text(&text, "Message").unwrap_or("");
        return Err(match (response.status, code) {
            (_, "Throttling") => Error::throttled(format!("AssumeRole: {message}")),
            (500..=599, _) => Error::unavailable(format!("AssumeRole: STS answered {}", response.status)),
            _ => Error::denied(format!("AssumeRole {role_arn}: {code}: {message}")),
        });
    }
    let field = |tag: &str| {
        xml_text(&text, tag)
            .map(str::to_string)
            .ok_or_else(|| Error::failed(format!("AssumeRole answered without {tag}")))
    };
    let credentials = Credentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: Some(field("SessionToken")?),
    };
    log::mark_secret(&credentials.secret_access_key);
    log::mark_secret(credentials.session_token.as_deref().unwrap_or_default());
    Ok(credentials)
}

/// The signing time: now, or `signing-time` (Unix seconds, for reproducible tests).
fn signing_time() -> Result<SigningTime, Error> {
    let seconds = match config::get("signing-time").filter(|t| !t.is_empty()) {
        Some(text) => text.parse().map_err(|_| Error::misconfigured("signing-time must be Unix seconds"))?,
        None => now(),
    };
    Ok(SigningTime::at(seconds))
}

impl Provider for AwsIam {
    fn get_credential(_request: CredentialRequest) -> Result<Credential, Error> {
        let cluster_id = config::require("cluster-id")?;
        let region = config::get("region").filter(|r| !r.is_empty()).unwrap_or_else(|| "us-east-1".into());
        let mut credentials = base_credentials()?;
        if let Some(role_arn) = config::get("role-arn").filter(|r| !r.is_empty()) {
            credentials = assume_role(&credentials, &region, &role_arn)?;
        }
        let (endpoint, signing_region) = sts_endpoint(&region)?;
        let url = sigv4::presign_get_caller_identity(
            &credentials,
            &endpoint,
            &signing_region,
            &cluster_id,
            &signing_time()?,
            60,
        );
        let token = format!("{TOKEN_PREFIX}{}", credbroker_sdk::base64url(url.as_bytes()));
        log::mark_secret(&token);
        // STS accepts a presigned URL for 15 minutes; kubectl renews a minute early.
        Ok(Credential::token(token).expires_in(14 * 60))
    }
}

impl Validator for AwsIam {
    fn validate(review: TokenReview) -> Result<ReviewOutcome, Error> {
        let identity = match verify::verify(&review.token)? {
            Ok(identity) => identity,
            Err(reason) => return Ok(ReviewOutcome::rejected(reason)),
        };
        Ok(match mapping::map(&identity)? {
            Some(user) => ReviewOutcome::authenticated(user),
            None => {
                ReviewOutcome::rejected(format!("ARN {} is not mapped to a Kubernetes user", identity.canonical_arn))
            }
        })
    }
}

credbroker_sdk::export_provider!(AwsIam);
credbroker_sdk::export_validator!(AwsIam);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_credentials_profiles_are_read() {
        let text = "[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s1\n\n[ci]\naws_access_key_id=AKIA2\naws_secret_access_key=s2\naws_session_token = t2\n";
        assert_eq!(shared_credentials(text, "default").unwrap().access_key_id, "AKIA1");
        let ci = shared_credentials(text, "ci").unwrap();
        assert_eq!((ci.secret_access_key.as_str(), ci.session_token.as_deref()), ("s2", Some("t2")));
        assert!(shared_credentials(text, "missing").is_none());
    }

    #[test]
    fn xml_fields_are_found() {
        let xml = "<AssumeRoleResult><Credentials><AccessKeyId>ASIA</AccessKeyId></Credentials></AssumeRoleResult>";
        assert_eq!(xml_text(xml, "AccessKeyId"), Some("ASIA"));
        assert_eq!(xml_text(xml, "SessionToken"), None);
    }
}
