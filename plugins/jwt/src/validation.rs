//! kube-apiserver's load-time rules for JWT authenticators
//! (`apiserver/pkg/apis/apiserver/validation`), each failure naming the
//! field it is about (`jwt[1].claimMappings.username`).

use std::fmt;

use base64::Engine as _;

/// A problem with one field of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Where, as kube-apiserver names it: `jwt[0].issuer.url`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The problems found so far.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { path: path.into(), message: message.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&shown.join("; "))
    }
}

/// The parts of a URL the rules look at, split as Go's `url.Parse` splits them.
#[derive(Debug)]
struct UrlParts<'a> {
    scheme: &'a str,
    user: bool,
    query: &'a str,
    fragment: &'a str,
}

fn split_url(url: &str) -> Result<UrlParts<'_>, String> {
    let (rest, fragment) = url.split_once('#').unwrap_or((url, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (scheme, rest) = match rest.find(':') {
        Some(0) => return Err("missing protocol scheme".into()),
        Some(colon)
            if rest[..colon].bytes().enumerate().all(|(i, b)| {
                b.is_ascii_alphabetic() || (i > 0 && (b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')))
            }) =>
        {
            (&rest[..colon], &rest[colon + 1..])
        }
        _ => ("", rest),
    };
    let mut user = false;
    if let Some(after) = rest.strip_prefix("//") {
        let authority = &after[..after.find('/').unwrap_or(after.len())];
        let host = match authority.rsplit_once('@') {
            Some((_, host)) => {
                user = true;
                host
            }
            None => authority,
        };
        let port = if let Some(v6) = host.strip_prefix('[') {
            v6.split_once(']').map(|(_, after)| after.strip_prefix(':').unwrap_or(after))
        } else {
            host.rsplit_once(':').map(|(_, port)| port)
        };
        if let Some(port) = port
            && !port.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!("invalid port {:?} after host", format!(":{port}")));
        }
    }
    Ok(UrlParts { scheme, user, query, fragment })
}

/// kube-apiserver's `validateURL`: https, no user, query or fragment.
pub fn https_url(problems: &mut Problems, path: &str, url: &str) {
    let parts = match split_url(url) {
        Ok(parts) => parts,
        Err(why) => return problems.add(path, format!("{url:?} is not a URL: {why}")),
    };
    if parts.scheme != "https" {
        problems.add(path, format!("{url:?}: the URL scheme must be https"));
    }
    if parts.user {
        problems.add(path, format!("{url:?}: the URL must not contain a username or password"));
    }
    if !parts.query.is_empty() {
        problems.add(path, format!("{url:?}: the URL must not contain a query"));
    }
    if !parts.fragment.is_empty() {
        problems.add(path, format!("{url:?}: the URL must not contain a fragment"));
    }
}

/// `issuer.url`: required, an https URL.
pub fn issuer_url(problems: &mut Problems, path: &str, url: &str) {
    if url.is_empty() {
        return problems.add(path, "the issuer URL is required");
    }
    https_url(problems, path, url);
}

/// `issuer.discoveryURL`: optional; an https URL other than the issuer's.
pub fn discovery_url(problems: &mut Problems, path: &str, issuer: &str, discovery: &str) {
    if discovery.is_empty() {
        return;
    }
    if !issuer.is_empty() && issuer.trim_end_matches('/') == discovery.trim_end_matches('/') {
        problems.add(path, format!("{discovery:?}: discoveryURL must be different from URL"));
    }
    https_url(problems, path, discovery);
}

/// `issuer.audiences` and `issuer.audienceMatchPolicy`.
pub fn audiences(problems: &mut Problems, path: &str, policy_path: &str, audiences: &[String], policy: &str) {
    if audiences.is_empty() {
        return problems.add(path, "at least one audience is required");
    }
    for (i, audience) in audiences.iter().enumerate() {
        if audience.is_empty() {
            problems.add(format!("{path}[{i}]"), "an audience can't be empty");
        }
        if audiences[..i].contains(audience) {
            problems.add(format!("{path}[{i}]"), format!("duplicate audience {audience:?}"));
        }
    }
    if audiences.len() > 1 && policy != "MatchAny" {
        problems.add(policy_path, format!("{policy:?}: audienceMatchPolicy must be MatchAny for multiple audiences"));
    }
    if audiences.len() == 1 && !policy.is_empty() && policy != "MatchAny" {
        problems.add(
            policy_path,
            format!("{policy:?}: audienceMatchPolicy must be empty or MatchAny for a single audience"),
        );
    }
}

/// The certificates (DER) of a PEM bundle; `Err` when it holds none or a
/// block is not a certificate.
pub fn certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let end = body.find(END).ok_or("a certificate has no END line")?;
        let text: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| "a certificate is not base64")?;
        if !looks_like_certificate(&der) {
            return Err("a PEM block is not an X.509 certificate".into());
        }
        out.push(der);
        rest = &body[end + END.len()..];
    }
    if out.is_empty() {
        return Err("the data does not contain any PEM certificate".into());
    }
    Ok(out)
}

/// A DER SEQUENCE whose length covers the data and whose first element is a
/// SEQUENCE too (the to-be-signed certificate).
fn looks_like_certificate(der: &[u8]) -> bool {
    fn header(d: &[u8]) -> Option<(usize, usize)> {
        if *d.first()? != 0x30 {
            return None;
        }
        let first = *d.get(1)?;
        if first < 0x80 {
            return Some((2, usize::from(first)));
        }
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let len = d.get(2..2 + count)?.iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        Some((2 + count, len))
    }
    match header(der) {
        Some((offset, len)) if offset + len == der.len() => header(&der[offset..]).is_some(),
        _ => false,
    }
}

/// `issuer.certificateAuthority`: PEM certificates, when set.
pub fn certificate_authority(problems: &mut Problems, path: &str, pem: &str) -> Vec<Vec<u8>> {
    if pem.is_empty() {
        return Vec::new();
    }
    certificates(pem).unwrap_or_else(|why| {
        problems.add(path, format!("<omitted>: {why}"));
        Vec::new()
    })
}

fn is_dns1123_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// `claimMappings.extra[].key`: a lowercase domain-prefixed path, not in
/// Kubernetes' own domains.
pub fn extra_key(problems: &mut Problems, path: &str, key: &str) {
    if key.is_empty() {
        return problems.add(path, "the key is required");
    }
    match key.split_once('/') {
        Some((domain, rest)) if !domain.is_empty() && !rest.is_empty() => {
            if domain.len() > 253 || !domain.split('.').all(is_dns1123_label) {
                problems.add(path, format!("{domain:?}: the domain must be a lowercase RFC 1123 subdomain"));
            }
            let path_char = |b: u8| b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b);
            if !rest.bytes().all(path_char) {
                problems.add(path, format!("{rest:?}: invalid path, it must match [A-Za-z0-9/\\-._~%!$&'()*+,;=:]+"));
            }
            let reserved = |d: &str| {
                d == "kubernetes.io" || d.ends_with(".kubernetes.io") || d == "k8s.io" || d.ends_with(".k8s.io")
            };
            if reserved(domain) {
                problems.add(
                    path,
                    format!("{key:?}: k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes use"),
                );
            }
        }
        _ => problems.add(path, format!("{key:?}: must be a domain-prefixed path (such as \"acme.io/foo\")")),
    }
    if key != key.to_lowercase() {
        problems.add(path, format!("{key:?}: the key must be lowercase"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(check: impl FnOnce(&mut Problems)) -> Vec<String> {
        let mut p = Problems::default();
        check(&mut p);
        p.0.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn urls_are_split_as_go_splits_them() {
        assert!(split_url("https://issuer-url:invalid-port").unwrap_err().contains("invalid port"));
        assert!(split_url(":x").unwrap_err().contains("missing protocol scheme"));
        let p = split_url("https://u:p@h:443/a?q#f").unwrap();
        assert!((p.scheme, p.user, p.query, p.fragment) == ("https", true, "q", "f"));
        assert_eq!(split_url("invalid-url").unwrap().scheme, "");
        assert_eq!(split_url("https://[::1]:8443/").unwrap().scheme, "https");
    }

    #[test]
    fn certificates_are_recognised() {
        assert!(certificates("invalid").unwrap_err().contains("does not contain"));
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(certificates(garbage).unwrap_err().contains("not an X.509"));
        // A SEQUENCE { SEQUENCE {} }: the shape of a certificate.
        let shaped = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode([0x30, 0x02, 0x30, 0x00])
        );
        assert_eq!(certificates(&shaped).unwrap(), [vec![0x30, 0x02, 0x30, 0x00]]);
    }

    #[test]
    fn extra_keys_follow_kubernetes_rules() {
        assert!(problems(|p| extra_key(p, "k", "example.org/foo")).is_empty());
        assert!(problems(|p| extra_key(p, "k", "foo"))[0].contains("domain-prefixed path"));
        assert!(problems(|p| extra_key(p, "k", "example.org/Foo"))[0].contains("lowercase"));
        assert!(problems(|p| extra_key(p, "k", "Example.org/foo")).iter().any(|m| m.contains("RFC 1123")));
        assert!(problems(|p| extra_key(p, "k", "authentication.kubernetes.io/x"))[0].contains("reserved"));
        assert!(problems(|p| extra_key(p, "k", "k8s.io/x"))[0].contains("reserved"));
        assert!(problems(|p| extra_key(p, "k", "x-kubernetes.io/a b"))[0].contains("invalid path"));
        assert!(problems(|p| extra_key(p, "k", ""))[0].contains("required"));
    }
}
