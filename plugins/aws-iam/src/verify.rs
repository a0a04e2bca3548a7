//! The validator's checks of a token, as aws-iam-authenticator makes them, and
//! the replay to STS.

use credbroker_sdk::{Error, config, http};
use serde_json::Value;

use super::{TOKEN_PREFIX, partitions, sigv4};

/// Longest token accepted.
const MAX_TOKEN: usize = 4096;
/// STS accepts a presigned URL this long after X-Amz-Date.
const MAX_AGE_SECONDS: i64 = 15 * 60;
const CLUSTER_HEADER: &str = "x-k8s-aws-id";
const ALLOWED_PARAMETERS: &[&str] = &[
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
];

/// Who STS says made the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The caller's ARN as STS gives it.
    pub arn: String,
    /// The ARN in canonical form: an assumed role becomes its role.
    pub canonical_arn: String,
    /// The account.
    pub account: String,
    /// The unique id of the user or role (for assumed roles, before the `:`).
    pub user_id: String,
    /// The session name of an assumed role.
    pub session_name: String,
    /// The access key that signed the token.
    pub access_key_id: String,
}

/// Whether `host` (canonical: lower case, no default port) is an STS endpoint
/// of `partition` (see [`partitions::is_sts_host`]), or one the operator added.
fn host_allowed(host: &str, partition: &str, extra: &[String]) -> bool {
    if extra.iter().any(|h| sigv4::canonical_host(h).as_deref().unwrap_or(h) == host) {
        return true;
    }
    partitions::named(partition).is_some_and(|p| partitions::is_sts_host(host, p))
}

/// Check `token` and ask STS who made it. `Ok(Err(reason))` is a rejection.
///
/// # Errors
///
/// Transient STS failures (unreachable, throttling) and bad settings.
pub fn verify(token: &str) -> Result<Result<Identity, String>, Error> {
    let cluster_id = config::require("cluster-id")?;
    let partition = config::get("partition").unwrap_or_else(|| "aws".into());
    let extra_hosts: Vec<String> = config::get("sts-hosts")
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
    let checked = match check(token, &partition, &extra_hosts, credbroker_sdk::now_unix()) {
        Ok(checked) => checked,
        Err(reason) => return Ok(Err(reason)),
    };
    let response = http::Request::get(&checked.url)
        .header(CLUSTER_HEADER, &cluster_id)
        .header("accept", "application/json")
        .timeout_ms(10_000)
        .send()
        .map_err(|e| Error::unavailable(format!("cannot reach STS at {}: {}", checked.host, e.describe())))?;
    let body = String::from_utf8_lossy(&response.body).into_owned();
    if response.status != 200 {
        if body.contains("Throttling") {
            return Err(Error::throttled(format!("STS at {} is throttling", checked.host)));
        }
        if response.status >= 500 {
            return Err(Error::unavailable(format!("STS at {} answered {}", checked.host, response.status)));
        }
        return Ok(Err(format!("STS rejected the token: {}", sts_error(&body))));
    }
    let (arn, account, user_id) =
        parse_identity(&body).ok_or_else(|| Error::failed("STS answered an unreadable identity"))?;
    identity(arn, account, user_id, checked.access_key_id).map(Ok)
}

/// A token that passed the local checks.
#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    /// The presigned URL.
    pub url: String,
    /// Its host.
    pub host: String,
    /// The access key it was signed with.
    pub access_key_id: String,
}

/// The local checks, with distinct reasons.
///
/// # Errors
///
/// Why the token is refused.
pub fn check(token: &str, partition: &str, extra_hosts: &[String], now: i64) -> Result<Checked, String> {
    use base64::Engine as _;
    if token.len() > MAX_TOKEN {
        return Err("the token is too large".into());
    }
    let encoded =
        token.strip_prefix(TOKEN_PREFIX).ok_or_else(|| format!("the token lacks the {TOKEN_PREFIX} prefix"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|e| format!("the token is not base64url: {e}"))?;
    let url = String::from_utf8(bytes).map_err(|_| "the token is not a URL".to_string())?;
    let rest = url.strip_prefix("https://").ok_or("the presigned URL is not https")?;
    let (authority, path_and_query) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    // As STS sees it (and as the client signed it): `STS.example:443` is `sts.example`.
    let host = sigv4::canonical_host(authority)
        .ok()
        .filter(|host| host_allowed(host, partition, extra_hosts))
        .ok_or_else(|| format!("unexpected hostname {authority:?} in the presigned URL"))?;
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    if path != "/" {
        return Err("unexpected path in the presigned URL".into());
    }
    let mut seen = std::collections::BTreeMap::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let key = key.to_ascii_lowercase();
        if !ALLOWED_PARAMETERS.contains(&key.as_str()) {
            return Err(format!("unexpected query parameter {key:?} in the presigned URL"));
        }
        if seen.insert(key.clone(), value.into_owned()).is_some() {
            return Err(format!("duplicate query parameter {key:?}"));
        }
    }
    if seen.get("action").map(String::as_str) != Some("GetCallerIdentity") {
        return Err("the presigned URL is not a GetCallerIdentity call".into());
    }
    let signed = seen.get("x-amz-signedheaders").map(String::as_str).unwrap_or_default();
    if !signed.split(';').any(|h| h == CLUSTER_HEADER) {
        return Err(format!("the client did not sign the {CLUSTER_HEADER} header"));
    }
    let expires = seen.get("x-amz-expires").and_then(|e| e.parse::<i64>().ok());
    if !expires.is_some_and(|e| (0..=900).contains(&e)) {
        return Err("invalid X-Amz-Expires in the presigned URL".into());
    }
    let date = seen.get("x-amz-date").ok_or("the presigned URL has no X-Amz-Date")?;
    let signed_at = parse_amz_date(date).ok_or_else(|| format!("malformed X-Amz-Date {date:?}"))?;
    if now > signed_at + MAX_AGE_SECONDS {
        return Err("the token has expired (X-Amz-Date is over 15 minutes old)".into());
    }
    let access_key_id = seen.get("x-amz-credential").and_then(|c| c.split('/').next()).unwrap_or_default().to_string();
    Ok(Checked { url, host, access_key_id })
}

/// `20240501T120000Z` as Unix seconds.
fn parse_amz_date(text: &str) -> Option<i64> {
    // Digits everywhere else (and so ASCII: the slicing below is safe).
    let shape = text.bytes().enumerate().all(|(i, b)| match i {
        8 => b == b'T',
        15 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    if text.len() != 16 || !shape {
        return None;
    }
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..11],
        &text[11..13],
        &text[13..15]
    );
    let time = humantime::parse_rfc3339(&iso).ok()?;
    time.duration_since(std::time::UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_secs()).ok())
}

/// `Code: Message` of an STS error body (JSON or XML).
fn sts_error(body: &str) -> String {
    if let Ok(json) = serde_json::from_str::<Value>(body) {
        let error = &json["Error"];
        return format!("{}: {}", error["Code"].as_str().unwrap_or("error"), error["Message"].as_str().unwrap_or(""));
    }
    let code = crate::sts::xml_text(body, "Code").unwrap_or("error");
    let message = crate::sts::xml_text(body, "Message").unwrap_or("");
    format!("{code}: {}", message.lines().next().unwrap_or(""))
}

/// ARN, account and user id from a GetCallerIdentity answer (JSON or XML).
fn parse_identity(body: &str) -> Option<(String, String, String)> {
    if let Ok(json) = serde_json::from_str::<Value>(body) {
        let result = &json["GetCallerIdentityResponse"]["GetCallerIdentityResult"];
        return Some((
            result["Arn"].as_str()?.into(),
            result["Account"].as_str()?.into(),
            result["UserId"].as_str()?.into(),
        ));
    }
    Some((
        crate::sts::xml_text(body, "Arn")?.into(),
        crate::sts::xml_text(body, "Account")?.into(),
        crate::sts::xml_text(body, "UserId")?.into(),
    ))
}

/// Canonicalise the ARN like aws-iam-authenticator: an assumed role
/// `arn:P:sts::A:assumed-role/ROLE/SESSION` is the role `arn:P:iam::A:role/ROLE`.
fn identity(arn: String, account: String, user_id: String, access_key_id: String) -> Result<Identity, Error> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, partition, service, _, arn_account, resource] = parts.as_slice() else {
        return Err(Error::failed(format!("STS answered a malformed ARN {arn}")));
    };
    let segments: Vec<&str> = resource.split('/').collect();
    let (canonical_arn, user_id, session_name) = match (*service, segments.as_slice()) {
        ("sts", ["assumed-role", role @ .., session]) if !role.is_empty() => {
            let (id, session_from_id) = user_id.split_once(':').unwrap_or((&user_id, session));
            (
                format!("arn:{partition}:iam::{arn_account}:role/{}", role.join("/")),
                id.to_string(),
                session_from_id.to_string(),
            )
        }
        ("iam", ["user" | "role" | "root", ..]) | ("sts", ["federated-user", ..]) => {
            (arn.clone(), user_id, String::new())
        }
        _ => return Err(Error::failed(format!("STS answered an ARN that is no identity: {arn}"))),
    };
    Ok(Identity { arn: arn.clone(), canonical_arn, account, user_id, session_name, access_key_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_for(url: &str) -> String {
        use base64::Engine as _;
        format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url))
    }

    const GOOD: &str = "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20240501%2Feu-west-1%2Fsts%2Faws4_request&X-Amz-Date=20240501T120000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=8f90";
    const SIGNED_AT: i64 = 1_714_564_800;

    #[test]
    fn well_formed_tokens_pass() {
        let checked = check(&token_for(GOOD), "aws", &[], SIGNED_AT + 60).unwrap();
        assert_eq!(checked.host, "sts.eu-west-1.amazonaws.com");
        assert_eq!(checked.access_key_id, "AKIDEXAMPLE");
    }

    #[test]
    fn a_date_with_non_ascii_bytes_is_malformed_not_a_panic() {
        // Found by the aws_token fuzz target: 16 bytes, `T` at 8 and `Z` at
        // the end, but a multi-byte character across a slicing boundary.
        assert_eq!(parse_amz_date("2t\u{86},\u{86}1T120000Z"), None);
        assert_eq!(parse_amz_date("2024050xT120000Z"), None);
        assert_eq!(parse_amz_date("20240501T120000Z"), Some(SIGNED_AT));
        let url = GOOD.replace("X-Amz-Date=20240501T120000Z", "X-Amz-Date=2t%C2%86,%C2%861T120000Z");
        assert!(check(&token_for(&url), "aws", &[], SIGNED_AT).unwrap_err().contains("malformed X-Amz-Date"));
    }

    #[test]
    fn every_malformation_has_its_reason() {
        let cases = [
            (format!("{TOKEN_PREFIX}{}", "a".repeat(5000)), "too large"),
            ("k8s-aws-v2.abc".to_string(), "prefix"),
            (format!("{TOKEN_PREFIX}!!!"), "not base64url"),
            (token_for(&GOOD.replace("https://", "http://")), "not https"),
            (token_for(&GOOD.replace("sts.eu-west-1.amazonaws.com", "sts.evil.example")), "unexpected hostname"),
            (token_for(&GOOD.replace(".com/?", ".com/x?")), "unexpected path"),
            (token_for(&format!("{GOOD}&Foo=1")), "unexpected query parameter \"foo\""),
            (token_for(&format!("{GOOD}&Action=GetCallerIdentity")), "duplicate query parameter"),
            (token_for(&GOOD.replace("GetCallerIdentity", "AssumeRole")), "not a GetCallerIdentity"),
            (token_for(&GOOD.replace("host%3Bx-k8s-aws-id", "host")), "did not sign the x-k8s-aws-id"),
            (token_for(&GOOD.replace("X-Amz-Expires=60", "X-Amz-Expires=901")), "X-Amz-Expires"),
        ];
        for (token, reason) in cases {
            let error = check(&token, "aws", &[], SIGNED_AT + 60).unwrap_err();
            assert!(error.contains(reason), "{reason}: {error}");
        }
        assert!(check(&token_for(GOOD), "aws", &[], SIGNED_AT + 16 * 60).unwrap_err().contains("expired"));
    }

    #[test]
    fn hosts_follow_the_partition() {
        assert!(host_allowed("sts.amazonaws.com", "aws", &[]));
        assert!(host_allowed("sts.us-west-2.amazonaws.com", "aws", &[]));
        assert!(host_allowed("sts-fips.us-east-1.amazonaws.com", "aws", &[]));
        assert!(host_allowed("sts.cn-north-1.amazonaws.com.cn", "aws-cn", &[]));
        assert!(host_allowed("sts.us-isob-east-1.sc2s.sgov.gov", "aws-iso-b", &[]));
        assert!(!host_allowed("sts.cn-north-1.amazonaws.com.cn", "aws", &[]));
        assert!(!host_allowed("sts.us-east-1.amazonaws.com.evil.example", "aws", &[]));
        assert!(!host_allowed("sts.us-east-1.amazonaws.com", "no-such-partition", &[]));
        assert!(!host_allowed("127.0.0.1:8443", "aws", &[]));
        assert!(host_allowed("127.0.0.1:8443", "aws", &["127.0.0.1:8443".into()]));
        assert!(host_allowed("sts.example", "aws", &["STS.Example:443".into()]));
    }

    /// What botocore writes for a region of each partition passes; the same
    /// URL is refused by a validator of another partition.
    #[test]
    fn every_partition_accepts_its_own_tokens() {
        for (region, partition) in [
            ("cn-north-1", "aws-cn"),
            ("cn-northwest-1", "aws-cn"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("us-isof-south-1", "aws-iso-f"),
            ("eusc-de-east-1", "aws-eusc"),
            ("us-gov-west-1", "aws-us-gov"),
            ("aws-global", "aws"),
        ] {
            let (host, _) = partitions::sts_host(region);
            let url = GOOD.replace("sts.eu-west-1.amazonaws.com", &host);
            assert_eq!(check(&token_for(&url), partition, &[], SIGNED_AT + 60).map(|c| c.host), Ok(host), "{region}");
            let other = if partition == "aws" { "aws-cn" } else { "aws" };
            let error = check(&token_for(&url), other, &[], SIGNED_AT + 60).unwrap_err();
            assert!(error.contains("unexpected hostname"), "{region} in {other}: {error}");
        }
    }

    /// botocore signs `STS.EU-WEST-1.AMAZONAWS.COM:443` as `sts.eu-west-1.amazonaws.com`.
    #[test]
    fn hosts_are_compared_as_signed() {
        let url = GOOD.replace("sts.eu-west-1.amazonaws.com", "STS.EU-West-1.AmazonAWS.com:443");
        let checked = check(&token_for(&url), "aws", &[], SIGNED_AT + 60).unwrap();
        assert_eq!(checked.host, "sts.eu-west-1.amazonaws.com");
        assert!(checked.url.starts_with("https://STS.EU-West-1.AmazonAWS.com:443/?"), "replayed as written");
        for bad in ["user@sts.amazonaws.com", "sts.amazonaws.com:444", "sts.amazonaws.com:x"] {
            let url = GOOD.replace("sts.eu-west-1.amazonaws.com", bad);
            let error = check(&token_for(&url), "aws", &[], SIGNED_AT + 60).unwrap_err();
            assert!(error.contains("unexpected hostname"), "{bad}: {error}");
        }
    }

    #[test]
    fn assumed_roles_become_roles() {
        let id = identity(
            "arn:aws:sts::123456789012:assumed-role/k8s-admins/alice-session".into(),
            "123456789012".into(),
            "AROAEXAMPLE:alice-session".into(),
            "ASIA".into(),
        )
        .unwrap();
        assert_eq!(id.canonical_arn, "arn:aws:iam::123456789012:role/k8s-admins");
        assert_eq!((id.user_id.as_str(), id.session_name.as_str()), ("AROAEXAMPLE", "alice-session"));
        let user = identity("arn:aws:iam::1:user/devs/bob".into(), "1".into(), "AIDA".into(), "AKIA".into()).unwrap();
        assert_eq!(user.canonical_arn, "arn:aws:iam::1:user/devs/bob");
    }
}
