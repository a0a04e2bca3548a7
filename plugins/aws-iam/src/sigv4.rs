//! AWS Signature Version 4, the parts STS needs: a presigned GetCallerIdentity
//! URL (the token) and a header-signed POST (AssumeRole).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Credentials to sign with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AKIA...` or `ASIA...`.
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: String,
    /// For temporary credentials.
    pub session_token: Option<String>,
}

/// The time of a signature: `20240501T120000Z` and `20240501`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningTime {
    /// ISO 8601 basic format.
    pub amz_date: String,
    /// The date part.
    pub date: String,
}

impl SigningTime {
    /// The signing time for `unix_seconds`.
    pub fn at(unix_seconds: u64) -> Self {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds);
        let iso = humantime::format_rfc3339_seconds(time).to_string(); // 2024-05-01T12:00:00Z
        let amz_date: String = iso.chars().filter(|c| *c != '-' && *c != ':').collect();
        let date = amz_date[..8].to_string();
        Self { amz_date, date }
    }
}

/// RFC 3986 percent-encoding as SigV4 wants it: everything but `A-Za-z0-9-_.~`,
/// upper-case hex.
pub fn uri_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The signature of `string_to_sign` with the key derived for date, region and service.
fn sign(credentials: &Credentials, time: &SigningTime, region: &str, service: &str, string_to_sign: &str) -> String {
    let date_key = hmac(format!("AWS4{}", credentials.secret_access_key).as_bytes(), time.date.as_bytes());
    let region_key = hmac(&date_key, region.as_bytes());
    let service_key = hmac(&region_key, service.as_bytes());
    let signing_key = hmac(&service_key, b"aws4_request");
    hex::encode(hmac(&signing_key, string_to_sign.as_bytes()))
}

fn scope(time: &SigningTime, region: &str, service: &str) -> String {
    format!("{}/{region}/{service}/aws4_request", time.date)
}

/// An STS endpoint: its URL as the operator (or botocore) wrote it, and the
/// host SigV4 signs for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://AUTHORITY`, as written (no trailing `/`).
    pub url: String,
    /// The host botocore signs: lower case, without the default port.
    pub host: String,
}

impl Endpoint {
    /// `https://HOST[:PORT][/]`.
    ///
    /// # Errors
    ///
    /// Why the URL is no STS endpoint: not https, a path, query or fragment
    /// (STS answers at `/`), user information, or a malformed host or port.
    pub fn parse(url: &str) -> Result<Self, String> {
        let authority = url.strip_prefix("https://").ok_or("it must be an https:// URL")?;
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains(['/', '?', '#']) {
            return Err("it must have no path, query or fragment (STS answers at /)".into());
        }
        let host = canonical_host(authority)?;
        Ok(Self { url: format!("https://{authority}"), host })
    }
}

/// The `host` header SigV4 signs for the authority of an https URL, as
/// botocore derives it: the host in lower case, then `:PORT` unless the port
/// is 443.
///
/// # Errors
///
/// An authority with user information, an empty or malformed host, or a bad port.
pub fn canonical_host(authority: &str) -> Result<String, String> {
    if authority.contains('@') {
        return Err("it must have no user information".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (address, after) = rest.split_once(']').ok_or("its IPv6 address lacks a ]")?;
            if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
                return Err(format!("[{address}] is no IPv6 address"));
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or("a port must follow the IPv6 address after :")?),
            };
            (&authority[..address.len() + 2], port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let name_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    if host.is_empty() || !(host.starts_with('[') || host.bytes().all(name_ok)) {
        return Err(format!("{host:?} is no host name"));
    }
    let host = host.to_ascii_lowercase();
    match port {
        None => Ok(host),
        // Digits only: Rust's parser would also take a leading `+`.
        Some(port) => match port.parse::<u16>() {
            Ok(443) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(host),
            Ok(number) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(format!("{host}:{number}")),
            _ => Err(format!("{port:?} is no port")),
        },
    }
}

/// A presigned `GET https://HOST/?Action=GetCallerIdentity...` whose signed
/// headers include `x-k8s-aws-id: cluster_id`, exactly as botocore presigns it
/// (parameter order included): the URL keeps the endpoint as written, the
/// signature covers [`Endpoint::host`].
pub fn presign_get_caller_identity(
    credentials: &Credentials,
    endpoint: &Endpoint,
    region: &str,
    cluster_id: &str,
    time: &SigningTime,
    expires: u32,
) -> String {
    let credential = format!("{}/{}", credentials.access_key_id, scope(time, region, "sts"));
    let mut params: Vec<(&str, String)> = vec![
        ("Action", "GetCallerIdentity".into()),
        ("Version", "2011-06-15".into()),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".into()),
        ("X-Amz-Credential", credential),
        ("X-Amz-Date", time.amz_date.clone()),
        ("X-Amz-Expires", expires.to_string()),
        ("X-Amz-SignedHeaders", "host;x-k8s-aws-id".into()),
    ];
    if let Some(token) = &credentials.session_token {
        params.push(("X-Amz-Security-Token", token.clone()));
    }
    let mut canonical_query: Vec<(String, String)> =
        params.iter().map(|(k, v)| (uri_encode(k), uri_encode(v))).collect();
    canonical_query.sort();
    let canonical_query = canonical_query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let canonical_request = format!(
        "GET\n/\n{canonical_query}\nhost:{}\nx-k8s-aws-id:{cluster_id}\n\nhost;x-k8s-aws-id\n{}",
        endpoint.host,
        sha256_hex(b"")
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{}\n{}",
        time.amz_date,
        scope(time, region, "sts"),
        sha256_hex(canonical_request.as_bytes())
    );
    let signature = sign(credentials, time, region, "sts", &string_to_sign);
    let query = params.iter().map(|(k, v)| format!("{k}={}", uri_encode(v))).collect::<Vec<_>>().join("&");
    format!("{}/?{query}&X-Amz-Signature={signature}", endpoint.url)
}

/// Headers for a SigV4-signed `POST https://HOST/` with a form `body`.
pub fn sign_post(
    credentials: &Credentials,
    host: &str,
    region: &str,
    service: &str,
    body: &str,
    time: &SigningTime,
) -> Vec<(String, String)> {
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let mut headers = vec![
        ("content-type".to_string(), content_type.to_string()),
        ("host".to_string(), host.to_string()),
        ("x-amz-date".to_string(), time.amz_date.clone()),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".to_string(), token.clone()));
    }
    headers.sort();
    let signed_headers = headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{}\n", v.trim())).collect();
    let canonical_request =
        format!("POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}", sha256_hex(body.as_bytes()));
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{}\n{}",
        time.amz_date,
        scope(time, region, service),
        sha256_hex(canonical_request.as_bytes())
    );
    let signature = sign(credentials, time, region, service, &string_to_sign);
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id,
        scope(time, region, service)
    );
    // `host` is set by the HTTP capability from the URL; send the rest.
    let mut out: Vec<(String, String)> = headers.into_iter().filter(|(k, _)| k != "host").collect();
    out.push(("authorization".to_string(), authorization));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    #[test]
    fn signing_time_is_iso_basic() {
        assert_eq!(
            SigningTime::at(1_714_564_800),
            SigningTime { amz_date: "20240501T120000Z".into(), date: "20240501".into() }
        );
    }

    /// The URL botocore presigns for these inputs (tests/fixtures/sts/README.md).
    #[test]
    fn presigned_urls_match_botocore() {
        let endpoint = Endpoint::parse("https://sts.eu-west-1.amazonaws.com").unwrap();
        let url = presign_get_caller_identity(
            &example(),
            &endpoint,
            "eu-west-1",
            "test-cluster",
            &SigningTime::at(1_714_564_800),
            60,
        );
        assert_eq!(
            url,
            "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20240501%2Feu-west-1%2Fsts%2Faws4_request&X-Amz-Date=20240501T120000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=8f902b005062748e81b471cbff40c37f438bc088b8a71ee54c3016b40e5c0dfe"
        );
    }

    /// botocore keeps the URL as written and signs `_host_from_url` of it.
    #[test]
    fn endpoints_are_signed_for_their_canonical_host() {
        let cases = [
            (
                "https://STS.EU-West-1.AmazonAWS.com:443",
                "https://STS.EU-West-1.AmazonAWS.com:443",
                "sts.eu-west-1.amazonaws.com",
            ),
            (
                "https://sts.eu-west-1.amazonaws.com/",
                "https://sts.eu-west-1.amazonaws.com",
                "sts.eu-west-1.amazonaws.com",
            ),
            ("https://Example.COM:8443/", "https://Example.COM:8443", "example.com:8443"),
            ("https://127.0.0.1:08443", "https://127.0.0.1:08443", "127.0.0.1:8443"),
            ("https://[::1]:443", "https://[::1]:443", "[::1]"),
            ("https://[FE80::1]:8443", "https://[FE80::1]:8443", "[fe80::1]:8443"),
        ];
        for (written, url, host) in cases {
            assert_eq!(Endpoint::parse(written), Ok(Endpoint { url: url.into(), host: host.into() }), "{written}");
        }
        let refused = [
            ("http://sts.amazonaws.com", "https://"),
            ("https://sts.amazonaws.com/prefix", "no path"),
            ("https://sts.amazonaws.com?x=1", "no path, query"),
            ("https://user@sts.amazonaws.com", "user information"),
            ("https://", "no host"),
            ("https://sts.amazonaws.com:", "no port"),
            ("https://sts.amazonaws.com:99999", "no port"),
            ("https://sts.amazonaws.com:-1", "no port"),
            ("https://sts.amazonaws.com:+443", "no port"),
            ("https://[::1", "lacks a ]"),
            ("https://[::1]x", "after :"),
            ("https://st s.example", "no host"),
        ];
        for (written, reason) in refused {
            let error = Endpoint::parse(written).unwrap_err();
            assert!(error.contains(reason), "{written}: {error}");
        }
    }

    #[test]
    fn encoding_keeps_only_unreserved_characters() {
        assert_eq!(uri_encode("a/b+c=d~e_f.g-h i"), "a%2Fb%2Bc%3Dd~e_f.g-h%20i");
    }
}
