//! `oci://REGISTRY/REPOSITORY:TAG` and `oci://REGISTRY/REPOSITORY@sha256:DIGEST`:
//! a plugin published as an OCI artifact.

use std::fmt;

/// The scheme that marks a plugin reference as an OCI artifact.
pub const SCHEME: &str = "oci://";

/// A plugin in an OCI registry: a tag, a digest, or both (the digest wins).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OciReference {
    /// `host[:port]`, e.g. `registry.corp:5000`.
    pub registry: String,
    /// The repository path, e.g. `credbroker/corp-ldap`.
    pub repository: String,
    /// The tag, e.g. `1.4`.
    pub tag: Option<String>,
    /// The manifest digest, `sha256:` and 64 lowercase hex digits.
    pub digest: Option<String>,
}

/// A reference that is not an `oci://` plugin reference.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{reference}` is not an OCI plugin reference ({why}); write oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:DIGEST"
)]
pub struct BadReference {
    /// The reference, escaped for display.
    pub reference: String,
    /// What is wrong.
    pub why: String,
}

/// Whether `spec` names an OCI artifact.
pub fn is_oci(spec: &str) -> bool {
    spec.starts_with(SCHEME)
}

impl OciReference {
    /// Parse `oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`.
    ///
    /// # Errors
    ///
    /// [`BadReference`] saying which part is wrong.
    pub fn parse(spec: &str) -> Result<Self, BadReference> {
        let bad =
            |why: &str| BadReference { reference: crate::boundary::text::name(spec).into_owned(), why: why.into() };
        let rest = spec.strip_prefix(SCHEME).ok_or_else(|| bad("it does not start with oci://"))?;
        let (registry, path) = rest.split_once('/').ok_or_else(|| bad("no repository after the registry"))?;
        if !is_registry(registry) {
            return Err(bad("the registry must be a host name or IP address, with an optional :port"));
        }
        let (path, digest) = match path.split_once('@') {
            Some((path, digest)) => (path, Some(digest)),
            None => (path, None),
        };
        if let Some(digest) = digest
            && !is_digest(digest)
        {
            return Err(bad("the digest must be sha256: and 64 lowercase hex digits"));
        }
        // A tag follows the last `:` after the last `/`.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
            _ => (path, None),
        };
        if !is_repository(repository) {
            return Err(bad("the repository must be lowercase letters and digits, separated by `/`, `.`, `_` or `-`"));
        }
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return Err(bad("a tag is 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"));
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad("it names no tag or digest"));
        }
        Ok(Self {
            registry: registry.to_ascii_lowercase(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// `REGISTRY/REPOSITORY`, as cosign's `docker-reference` names it.
    pub fn repository_path(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at `digest`, without a tag.
    pub fn at_digest(&self, digest: &str) -> Self {
        Self { digest: Some(digest.to_string()), tag: None, ..self.clone() }
    }

    /// The same repository at `tag`.
    pub fn at_tag(&self, tag: &str) -> Self {
        Self { digest: None, tag: Some(tag.to_string()), ..self.clone() }
    }

    /// Whether the registry is on this machine (`insecure` is allowed only then).
    pub fn is_loopback(&self) -> bool {
        is_loopback_registry(&self.registry)
    }

    /// The reference for the OCI client.
    pub fn client_reference(&self) -> oci_client::Reference {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => {
                oci_client::Reference::with_digest(self.registry.clone(), self.repository.clone(), digest.clone())
            }
            (None, Some(tag)) => {
                oci_client::Reference::with_tag(self.registry.clone(), self.repository.clone(), tag.clone())
            }
            (None, None) => {
                oci_client::Reference::with_tag(self.registry.clone(), self.repository.clone(), "latest".into())
            }
        }
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether `registry` (`host[:port]`) is a loopback address or `localhost`.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `registry` is `host[:port]` (a DNS name, an IPv4 address or a
/// bracketed IPv6 address).
pub fn is_registry(registry: &str) -> bool {
    let (host, port) = match registry.strip_prefix('[') {
        Some(rest) => {
            let Some((ip, rest)) = rest.split_once(']') else { return false };
            if ip.parse::<std::net::Ipv6Addr>().is_err() {
                return false;
            }
            match rest {
                "" => (None, None),
                _ => match rest.strip_prefix(':') {
                    Some(port) => (None, Some(port)),
                    None => return false,
                },
            }
        }
        None => match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        },
    };
    let host_ok = host.is_none_or(|h| {
        !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    });
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

fn is_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.len() <= 255
        && repository.split('/').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        })
}

fn is_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && !tag.starts_with(['.', '-'])
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `digest` is `sha256:` and 64 lowercase hex digits.
pub fn is_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_print_back() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for spec in [
            "oci://registry.corp/credbroker/corp-ldap:1.4".to_string(),
            "oci://127.0.0.1:5000/corp-ldap:v1".to_string(),
            format!("oci://registry.corp/credbroker/corp-ldap@{digest}"),
            format!("oci://registry.corp/a/b/c:1.4@{digest}"),
            format!("oci://[::1]:5000/x@{digest}"),
        ] {
            let parsed = OciReference::parse(&spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(parsed.to_string(), spec);
        }
        let tagged = OciReference::parse("oci://Registry.Corp:5000/credbroker/corp-ldap:1.4").unwrap();
        assert_eq!(tagged.registry, "registry.corp:5000");
        assert_eq!(tagged.repository, "credbroker/corp-ldap");
        assert_eq!(tagged.tag.as_deref(), Some("1.4"));
        assert_eq!(tagged.repository_path(), "registry.corp:5000/credbroker/corp-ldap");
        assert!(!tagged.is_loopback());
        assert!(OciReference::parse("oci://localhost:5000/x:1").unwrap().is_loopback());
        assert!(OciReference::parse("oci://127.0.0.2/x:1").unwrap().is_loopback());
        assert!(OciReference::parse("oci://[::1]:5000/x:1").unwrap().is_loopback());
    }

    #[test]
    fn malformed_references_say_what_is_wrong() {
        for (spec, why) in [
            ("oci://registry.corp", "no repository"),
            ("oci://registry.corp/x", "no tag or digest"),
            ("oci://registry.corp/Upper:1", "the repository must be lowercase"),
            ("oci://registry.corp/x:-bad", "a tag is 1 to 128"),
            ("oci://registry.corp/x@sha256:abc", "the digest must be"),
            ("oci://bad_host/x:1", "the registry must be"),
            ("oci://host:99999/x:1", "the registry must be"),
            ("oci://host/x//y:1", "the repository must be"),
            ("oci://host/x:1\u{1b}[2J", "a tag is"),
        ] {
            let error = OciReference::parse(spec).unwrap_err().to_string();
            assert!(error.contains(why), "{spec}: {error}");
            assert!(!error.contains('\u{1b}'), "{error}");
        }
    }
}
