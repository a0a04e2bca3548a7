//! The `aws-iam` plugin: EKS-style IAM authentication, wire-compatible with
//! aws-iam-authenticator on both sides.
//!
//! **Provider** (`credbroker get --provider aws-iam`): the token is
//! `k8s-aws-v1.` + base64url(a SigV4-presigned STS GetCallerIdentity URL whose
//! signed headers include `x-k8s-aws-id: CLUSTER`), valid 15 minutes (the
//! ExecCredential says 14, or less when the credentials expire sooner); the
//! STS host is the regional endpoint of the region's partition, as botocore
//! picks it ([`partitions`]). The credentials come from the AWS CLI's chain
//! ([`chain`]): settings, environment, assumed roles, web identity, SSO,
//! shared files, `credential_process` (run by the host when granted), the
//! container endpoint; `role-arn` assumes one more role
//! first (with `session-name`, default `credbroker`); `sts-endpoint` (or a
//! granted `AWS_ENDPOINT_URL_STS`) uses another STS URL (e.g. a VPC
//! endpoint), signed as botocore signs it (host in lower case, no `:443`).
//!
//! **Validator** (`credbroker serve`): checks the token like
//! aws-iam-authenticator (length, prefix, encoding, https, an STS host of the
//! partition, path, parameters, action, signed cluster header, age), replays
//! the GET to STS with this cluster's id, and maps the caller's ARN to a
//! Kubernetes user with `map-roles`, `map-users` (JSON lists in the aws-auth
//! ConfigMap's shape) and `map-accounts`. Settings: `cluster-id` (required),
//! `partition` (`aws`), `sts-hosts` (extra allowed STS hosts, comma-separated),
//! `map-roles`, `map-users`, `map-accounts`.

pub mod chain;
pub mod ini;
pub mod mapping;
pub mod partitions;
pub mod sigv4;
pub mod sts;
pub mod verify;

use credbroker_sdk::{
    Credential, CredentialRequest, Error, HostError, Provider, ReviewOutcome, TokenReview, Validator, config,
    credential_process, files, log, prompt,
};

use self::chain::{FileError, RoleRequest, SsoRequest, Temporary, WebIdentityRequest};
use self::sigv4::{Credentials, Endpoint, SigningTime};

/// Tokens are prefixed with this.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// How long STS accepts a presigned URL; kubectl renews a minute early.
const TOKEN_LIFETIME_SECONDS: u64 = 14 * 60;

struct AwsIam;

fn now() -> u64 {
    u64::try_from(credbroker_sdk::now_unix()).unwrap_or(0)
}

/// The STS endpoint to sign for and the region to sign with: `sts-endpoint`
/// if set, else `AWS_ENDPOINT_URL_STS` or `AWS_ENDPOINT_URL` (when granted, as
/// the AWS CLI honours them), else the regional endpoint of `region`'s
/// partition (as botocore picks it).
fn sts_endpoint(region: &str) -> Result<(Endpoint, String), Error> {
    if !partitions::valid_region_name(region) {
        return Err(Error::misconfigured(format!(
            "region {region:?} is no region name (letters, digits and -, like eu-west-1)"
        )));
    }
    let custom = non_empty_setting("sts-endpoint")
        .map(|url| (url, "sts-endpoint"))
        .or_else(|| env("AWS_ENDPOINT_URL_STS").map(|url| (url, "AWS_ENDPOINT_URL_STS")))
        .or_else(|| env("AWS_ENDPOINT_URL").map(|url| (url, "AWS_ENDPOINT_URL")));
    match custom {
        Some((url, from)) => {
            let endpoint = Endpoint::parse(&url).map_err(|e| Error::misconfigured(format!("{from} {url:?}: {e}")))?;
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

/// The SSO portal of `region`: `sso-endpoint`, else a granted
/// `AWS_ENDPOINT_URL_SSO` or `AWS_ENDPOINT_URL`, else AWS's.
fn sso_portal(region: &str) -> Result<String, Error> {
    if !partitions::valid_region_name(region) {
        return Err(Error::misconfigured(format!("sso_region {region:?} is no region name")));
    }
    Ok(non_empty_setting("sso-endpoint")
        .or_else(|| env("AWS_ENDPOINT_URL_SSO"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| format!("https://portal.sso.{region}.amazonaws.com")))
}

fn non_empty_setting(key: &str) -> Option<String> {
    config::get(key).filter(|v| !v.is_empty())
}

/// A variable of the plugin's environment: only what `grants.env` passes.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The chain's view of the sandbox: settings, the granted environment and
/// files, the terminal, STS and the SSO portal over the `http` capability,
/// and the credential helpers the host runs (`credential-process`).
struct Sandbox {
    interactive: bool,
}

impl chain::Sources for Sandbox {
    fn setting(&self, key: &str) -> Option<String> {
        non_empty_setting(key)
    }

    fn env(&self, name: &str) -> Option<String> {
        env(name)
    }

    fn read(&self, path: &str) -> Result<Option<String>, FileError> {
        match files::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(HostError::Denied(_)) => Err(FileError::NotGranted),
            // The host says why in words; ENOENT (os error 2) is "not there",
            // which the AWS CLI takes as an empty file.
            Err(HostError::Unreachable(why)) if why.contains("(os error 2)") => Ok(None),
            Err(other) => Err(FileError::Unreadable(other.describe())),
        }
    }

    fn now(&self) -> u64 {
        now()
    }

    fn ask(&self, question: &str) -> Result<String, Error> {
        if !self.interactive {
            return Err(Error::misconfigured("this run is not interactive; run kubectl from a terminal"));
        }
        Ok(prompt::text(question)?)
    }

    fn assume_role(&self, base: &Credentials, request: &RoleRequest) -> Result<Temporary, Error> {
        let (endpoint, signing_region) = sts_endpoint(&request.region)?;
        sts::assume_role(base, &endpoint, &signing_region, request, now())
    }

    fn assume_role_with_web_identity(&self, request: &WebIdentityRequest) -> Result<Temporary, Error> {
        log::mark_secret(&request.token);
        let (endpoint, _) = sts_endpoint(&request.region)?;
        sts::assume_role_with_web_identity(&endpoint, request)
    }

    fn sso_role_credentials(&self, request: &SsoRequest) -> Result<Temporary, Error> {
        log::mark_secret(&request.access_token);
        sts::sso_role_credentials(&sso_portal(&request.region)?, request)
    }

    fn container_credentials(&self, url: &str, authorization: Option<&str>) -> Result<Temporary, Error> {
        sts::container_credentials(url, authorization)
    }

    fn credential_process(&self, command_line: &str) -> Result<String, Error> {
        let output = credential_process::run(command_line)?;
        let output = String::from_utf8(output).map_err(|_| Error::failed("it printed something that is not UTF-8"))?;
        // The keys are secrets the host does not know of: marked before
        // anything could log them.
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&output) {
            for key in ["SecretAccessKey", "SessionToken"] {
                if let Some(secret) = value[key].as_str().filter(|s| !s.is_empty()) {
                    log::mark_secret(secret);
                }
            }
        }
        Ok(output)
    }
}

/// The signing time: now, or `signing-time` (Unix seconds, for reproducible tests).
fn signing_time() -> Result<SigningTime, Error> {
    let seconds = match non_empty_setting("signing-time") {
        Some(text) => text.parse().map_err(|_| Error::misconfigured("signing-time must be Unix seconds"))?,
        None => now(),
    };
    Ok(SigningTime::at(seconds))
}

/// When the token stops working: 14 minutes from now, or a minute before
/// its credentials expire if that is sooner.
fn token_expiry(now: u64, credentials_expire: Option<u64>) -> Result<u64, Error> {
    let lifetime = now + TOKEN_LIFETIME_SECONDS;
    match credentials_expire {
        Some(at) if at <= now + 60 => Err(Error::denied(format!(
            "the AWS credentials expire at {}, too soon to sign a token with them; renew them",
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at))
        ))),
        Some(at) => Ok(lifetime.min(at - 60)),
        None => Ok(lifetime),
    }
}

impl Provider for AwsIam {
    fn get_credential(request: CredentialRequest) -> Result<Credential, Error> {
        let cluster_id = config::require("cluster-id")?;
        let sandbox = Sandbox { interactive: request.interactive };
        let resolved = chain::resolve(&sandbox)?;
        // Keys read from the shared files are secrets the host does not know of.
        log::mark_secret(&resolved.temporary.credentials.secret_access_key);
        if let Some(token) = &resolved.temporary.credentials.session_token {
            log::mark_secret(token);
        }
        log::debug(&format!("AWS credentials from {}", resolved.source));
        let mut temporary = resolved.temporary;
        if let Some(role_arn) = non_empty_setting("role-arn") {
            let role = RoleRequest {
                role_arn,
                session_name: non_empty_setting("session-name").unwrap_or_else(|| "credbroker".into()),
                external_id: None,
                mfa: None,
                duration_seconds: None,
                region: resolved.region.clone(),
            };
            temporary = chain::Sources::assume_role(&sandbox, &temporary.credentials, &role)?;
        }
        let (endpoint, signing_region) = sts_endpoint(&resolved.region)?;
        let url = sigv4::presign_get_caller_identity(
            &temporary.credentials,
            &endpoint,
            &signing_region,
            &cluster_id,
            &signing_time()?,
            60,
        );
        let token = format!("{TOKEN_PREFIX}{}", credbroker_sdk::base64url(url.as_bytes()));
        log::mark_secret(&token);
        let expiry = token_expiry(now(), temporary.expires_at)?;
        Ok(Credential::token(token).expires_at(i64::try_from(expiry).unwrap_or(i64::MAX)))
    }
}

impl Validator for AwsIam {
    /// Parse the mappings once per load: a broken one is a load error.
    fn setup() -> Result<(), Error> {
        config::require("cluster-id")?;
        mapping::mappings().map(|_| ())
    }

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
    fn tokens_expire_with_their_credentials() {
        assert_eq!(token_expiry(1000, None).unwrap(), 1000 + 14 * 60);
        assert_eq!(token_expiry(1000, Some(100_000)).unwrap(), 1000 + 14 * 60);
        assert_eq!(token_expiry(1000, Some(1300)).unwrap(), 1240, "a minute before the credentials expire");
        assert!(matches!(token_expiry(1000, Some(1030)), Err(Error::Denied(m)) if m.contains("too soon")));
    }
}
