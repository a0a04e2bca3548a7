//! The AWS IAM validator's local checks of a presigned-STS-URL token:
//! `credbroker_plugin_aws_iam::verify::check` (everything before the token is
//! replayed to STS).
//!
//! Input: `FLAGS [EXTRA_HOSTS '\n'] BODY`. FLAGS picks the partition (bits 0-2),
//! whether BODY is the raw token (bit 3) or the presigned URL that is
//! base64url-encoded into a `k8s-aws-v1.` token here (so the fuzzer mutates
//! URLs, not base64), whether a comma-separated `sts-hosts` line comes first
//! (bit 4), and the current time (bits 5-6).
//!
//! Checks that an accepted token:
//! - is within the size limit and decodes to the URL that `Checked` holds;
//! - names a host that is an STS endpoint of the partition (re-derived here
//!   independently, more loosely) or one of the operator's extra hosts;
//! - is a `https://AUTHORITY/?...` URL that the `url` crate (which the host's
//!   HTTP capability parses URLs with) reads with the checked host (lower
//!   case), no port other than 443 and path `/` — so the request really goes
//!   to the host that was checked;
//! - is a GetCallerIdentity call whose access key id has no `/`;
//! - is refused at the end of time (nothing is valid forever).
#![no_main]

use base64::Engine as _;
use credbroker_plugin_aws_iam::TOKEN_PREFIX;
use credbroker_plugin_aws_iam::sigv4::canonical_host;
use credbroker_plugin_aws_iam::verify::check;
use libfuzzer_sys::fuzz_target;

const PARTITIONS: [&str; 8] = ["aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-eusc", "", "AWS"];
/// 2024-05-01T12:01:00Z: a minute after the seeds' X-Amz-Date.
const NOW: [i64; 4] = [1_714_564_860, 0, i64::MAX, i64::MIN];

/// Whether `host` could be an STS endpoint of `partition`, re-derived from
/// AWS's naming: `sts.amazonaws.com` in `aws`, or `sts[-fips].REGION.SUFFIX`
/// with REGION one label of `[a-z0-9-]` and SUFFIX the partition's domain or
/// dual-stack domain. (The validator also checks that REGION belongs to the
/// partition: this is a superset.)
fn sts_host(host: &str, partition: &str) -> bool {
    let suffixes: &[&str] = match partition {
        "aws" | "aws-us-gov" => &["amazonaws.com", "api.aws"],
        "aws-cn" => &["amazonaws.com.cn", "api.amazonwebservices.com.cn"],
        "aws-iso" => &["c2s.ic.gov", "api.aws.ic.gov"],
        "aws-iso-b" => &["sc2s.sgov.gov", "api.aws.scloud"],
        "aws-eusc" => &["amazonaws.eu", "api.amazonwebservices.eu"],
        _ => return false,
    };
    if partition == "aws" && host == "sts.amazonaws.com" {
        return true;
    }
    let Some(rest) = host.strip_prefix("sts.").or_else(|| host.strip_prefix("sts-fips.")) else { return false };
    let Some((region, suffix)) = rest.split_once('.') else { return false };
    !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && suffixes.contains(&suffix)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut body)) = data.split_first() else { return };
    let partition = PARTITIONS[usize::from(flags & 7)];
    let raw = flags & 8 != 0;
    let now = NOW[usize::from((flags >> 5) & 3)];
    let mut extra_hosts: Vec<String> = Vec::new();
    if flags & 16 != 0 {
        let (line, rest) = match body.iter().position(|&b| b == b'\n') {
            Some(at) => (&body[..at], &body[at + 1..]),
            None => (body, &[][..]),
        };
        let Ok(line) = std::str::from_utf8(line) else { return };
        // As `verify` reads the `sts-hosts` setting.
        extra_hosts = line.split(',').map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).collect();
        body = rest;
    }
    let token = if raw {
        let Ok(token) = std::str::from_utf8(body) else { return };
        token.to_string()
    } else {
        format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body))
    };

    let Ok(checked) = check(&token, partition, &extra_hosts, now) else { return };

    assert!(token.len() <= 4096);
    let encoded = token.strip_prefix(TOKEN_PREFIX).expect("accepted tokens have the prefix");
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).expect("accepted tokens decode");
    assert_eq!(decoded, checked.url.as_bytes(), "Checked.url is not the token's URL");

    // Extra hosts are compared as SigV4 signs them (lower case, no :443).
    let extra = extra_hosts.iter().any(|h| canonical_host(h).as_deref().unwrap_or(h) == checked.host);
    assert!(
        extra || sts_host(&checked.host, partition),
        "host {:?} accepted for partition {partition:?}",
        checked.host
    );
    let rest = checked.url.strip_prefix("https://").expect("the URL is https://...");
    let (authority, after_host) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    assert!(!authority.contains(['@', '\\', '%']), "authority {authority:?} accepted");
    assert!(after_host.starts_with("/?") || after_host == "/", "path of {:?}", checked.url);
    if !extra {
        let parsed = url::Url::parse(&checked.url).unwrap_or_else(|e| panic!("{:?} does not parse: {e}", checked.url));
        assert_eq!(parsed.scheme(), "https");
        assert_eq!(parsed.host_str(), Some(checked.host.as_str()), "url crate sees another host in {:?}", checked.url);
        assert_eq!(parsed.port(), None);
        assert_eq!(parsed.path(), "/");
        assert!(parsed.username().is_empty() && parsed.password().is_none());
    }
    assert!(!checked.access_key_id.contains('/'));
    let query = after_host.strip_prefix("/?").unwrap_or("");
    assert!(
        form_urlencoded_action(query).as_deref() == Some("GetCallerIdentity"),
        "not a GetCallerIdentity call: {:?}",
        checked.url
    );
    assert!(check(&token, partition, &extra_hosts, i64::MAX).is_err(), "a token valid forever: {:?}", checked.url);
});

/// The `Action` parameter (case-insensitive name), decoded.
fn form_urlencoded_action(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("action"))
        .map(|(_, v)| v.into_owned())
}
