//! kube-apiserver's URL CEL library (`url("https://a.example/p?q=1").getHost()`),
//! parsing as Go's `url.ParseRequestURI` does: an absolute URI or an absolute
//! path, no fragment handling, escapes checked.

use std::collections::BTreeMap;

use cel::objects::Opaque;

/// A parsed URL (`kubernetes.URL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    scheme: String,
    /// `host[:port]` as written (IPv6 in brackets), empty without authority.
    host: String,
    /// The path as written (still escaped); empty for an opaque URI.
    raw_path: String,
    /// After `?`, as written.
    raw_query: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.URL"
    }
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Every `%` starts a two-digit hex escape.
fn valid_escapes(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if i + 2 >= bytes.len() || !(is_hex(bytes[i + 1]) && is_hex(bytes[i + 2])) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Decode `%XX` escapes (and `+` as a space in a query).
fn unescape(text: &str, query: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (h, l) = (*bytes.get(i + 1)?, *bytes.get(i + 2)?);
                if !(is_hex(h) && is_hex(l)) {
                    return None;
                }
                out.push(hex_value(h) << 4 | hex_value(l));
                i += 3;
            }
            b'+' if query => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Go's `shouldEscape` for paths.
fn escape_in_path(b: u8) -> bool {
    !(b.is_ascii_alphanumeric()
        || matches!(b, b'-' | b'_' | b'.' | b'~' | b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@'))
}

/// Parse `text` as Go's `url.ParseRequestURI` does.
///
/// # Errors
///
/// Why `text` is not a request URI.
pub fn parse(text: &str) -> Result<Url, String> {
    let invalid = |why: &str| format!("URL parse error during conversion from string: parse {text:?}: {why}");
    if text.is_empty() {
        return Err(invalid("empty url"));
    }
    if text.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(invalid("net/url: invalid control character in URL"));
    }
    // The scheme: a letter, then letters, digits, `+`, `-`, `.`, up to `:`.
    let mut scheme = String::new();
    let mut rest = text;
    if let Some(colon) = text.find(':') {
        let candidate = &text[..colon];
        let valid = candidate.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphabetic() || (i > 0 && (b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')))
        });
        if colon == 0 {
            return Err(invalid("missing protocol scheme"));
        }
        if valid {
            scheme = candidate.to_ascii_lowercase();
            rest = &text[colon + 1..];
        }
    }
    let (before_query, raw_query) = match rest.split_once('?') {
        Some((path, query)) => (path, query.to_string()),
        None => (rest, String::new()),
    };
    if !before_query.starts_with('/') {
        if scheme.is_empty() {
            return Err(invalid("invalid URI for request"));
        }
        // A rootless path after a scheme is opaque (`mailto:x`).
        return Ok(Url { scheme, host: String::new(), raw_path: String::new(), raw_query });
    }
    let (host, raw_path) = match before_query.strip_prefix("//") {
        Some(authority_and_path) if !scheme.is_empty() => {
            let end = authority_and_path.find('/').unwrap_or(authority_and_path.len());
            let authority = &authority_and_path[..end];
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            check_host(host).map_err(|why| invalid(&why))?;
            (host.to_string(), authority_and_path[end..].to_string())
        }
        _ => (String::new(), before_query.to_string()),
    };
    if !valid_escapes(&raw_path) {
        return Err(invalid("invalid URL escape"));
    }
    Ok(Url { scheme, host, raw_path, raw_query })
}

fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or("missing ']' in host")?;
        if inside.parse::<std::net::Ipv6Addr>().is_err() && !inside.contains('%') {
            return Err(format!("invalid IPv6 host {inside:?}"));
        }
        (inside, after.strip_prefix(':').map(Some).unwrap_or_else(|| (!after.is_empty()).then_some(after)))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if let Some(port) = port
        && !port.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("invalid port {:?} after host", format!(":{port}")));
    }
    let allowed = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b':'
            )
    };
    if let Some(bad) = name.bytes().find(|b| !allowed(*b)) {
        return Err(format!("invalid character {:?} in host name", char::from(bad)));
    }
    Ok(())
}

impl Url {
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// `host[:port]`.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn split_host(&self) -> (&str, &str) {
        if let Some(v6) = self.host.strip_prefix('[') {
            let (inside, after) = v6.split_once(']').unwrap_or((v6, ""));
            return (inside, after.strip_prefix(':').unwrap_or(""));
        }
        match self.host.rsplit_once(':') {
            Some((name, port)) => (name, port),
            None => (&self.host, ""),
        }
    }

    /// The host without port (and an IPv6 address without brackets).
    pub fn hostname(&self) -> &str {
        self.split_host().0
    }

    pub fn port(&self) -> &str {
        self.split_host().1
    }

    /// Go's `EscapedPath`: the path as written when it is a valid encoding,
    /// else the decoded path escaped again.
    pub fn escaped_path(&self) -> String {
        let sub_delims = |b: u8| {
            matches!(
                b,
                b'!' | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'['
                    | b']'
                    | b'%'
            )
        };
        if self.raw_path.bytes().all(|b| sub_delims(b) || !escape_in_path(b)) {
            return self.raw_path.clone();
        }
        let decoded = unescape(&self.raw_path, false).unwrap_or_else(|| self.raw_path.clone());
        let mut out = String::with_capacity(decoded.len());
        for b in decoded.bytes() {
            if escape_in_path(b) {
                out.push_str(&format!("%{b:02X}"));
            } else {
                out.push(char::from(b));
            }
        }
        out
    }

    /// Go's `Query()`: `&`-separated pairs, decoded; malformed pairs dropped.
    pub fn query(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in self.raw_query.split('&').filter(|p| !p.is_empty() && !p.contains(';')) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if let (Some(key), Some(value)) = (unescape(key, true), unescape(value, true)) {
                out.entry(key).or_default().push(value);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_uris_parse_as_go_does() {
        let u = parse("https://user@Example.com:8443/a%20b/c?x=1&x=2&y=a+b").unwrap();
        assert_eq!(
            (u.scheme(), u.host(), u.hostname(), u.port()),
            ("https", "Example.com:8443", "Example.com", "8443")
        );
        assert_eq!(u.escaped_path(), "/a%20b/c");
        assert_eq!(u.query()["x"], ["1", "2"]);
        assert_eq!(u.query()["y"], ["a b"]);
        let v6 = parse("HTTPS://[2001:db8::1]:443/").unwrap();
        assert_eq!((v6.scheme(), v6.hostname(), v6.port()), ("https", "2001:db8::1", "443"));
        assert_eq!(parse("/just/a/path").unwrap().escaped_path(), "/just/a/path");
        assert_eq!(parse("https://a.example/a b").unwrap().escaped_path(), "/a%20b");
        assert!(parse("mailto:someone").is_ok(), "opaque");
    }

    #[test]
    fn non_request_uris_are_refused() {
        for bad in [
            "",
            "relative/path",
            ":nothing",
            "https://a.example:port/",
            "https://a b.example/",
            "https://a.example/%zz",
            "https://a.example/\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
