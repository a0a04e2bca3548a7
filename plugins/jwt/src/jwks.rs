//! An issuer's signing keys: discovery, the JWKS, and a cache in the
//! validator's state, kept parsed (a compact binary form read back without
//! JSON), so a review pays for a lookup, not for parsing the key set.
//!
//! Like go-oidc's remote key set, a token that no cached key verifies makes
//! the keys be fetched again (here at most every `jwks-min-refresh-seconds`),
//! so a rotation needs no restart. Keys older than `jwks-cache-seconds` are
//! fetched again; when that fails, the old keys keep serving.

use base64::Engine as _;
use credbroker_sdk::crypto::{PublicKey, RsaPublicKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::host::Host;
use crate::review::Stop;

/// A public key's material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Material {
    Rsa {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    },
    /// SEC 1 uncompressed (`0x04 || x || y`).
    EcPoint(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl Material {
    /// As the host's `crypto` takes it.
    pub fn public_key(&self) -> PublicKey {
        match self {
            Material::Rsa { modulus, exponent } => {
                PublicKey::Rsa(RsaPublicKey { modulus: modulus.clone(), exponent: exponent.clone() })
            }
            Material::EcPoint(point) => PublicKey::EcPoint(point.clone()),
            Material::Ed25519(key) => PublicKey::Ed25519(key.clone()),
        }
    }

    /// The JWK `kty` it has.
    pub fn key_type(&self) -> &'static str {
        match self {
            Material::Rsa { .. } => "RSA",
            Material::EcPoint(_) => "EC",
            Material::Ed25519(_) => "OKP",
        }
    }
}

/// A key of an issuer's JWKS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it pins one.
    pub alg: Option<String>,
    /// Whether `use` allows signatures (absent counts as yes).
    pub for_signing: bool,
    pub key: Material,
}

/// Cache timing.
#[derive(Clone, Copy, Debug)]
pub struct Refresh {
    pub cache_seconds: i64,
    pub min_refresh_seconds: i64,
}

/// Where an issuer's keys come from.
#[derive(Clone, Debug)]
pub struct Source<'a> {
    /// The issuer URL the discovery document must name.
    pub issuer: &'a str,
    pub discovery_url: &'a str,
    /// Whether the discovery document may spell the issuer with a trailing `/`
    /// more or less (the flat settings' tolerance).
    pub lenient_issuer: bool,
}

/// A JWK, as far as signature checks need it.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

fn b64(part: Option<&str>) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part?.trim_end_matches('=')).ok()
}

/// The keys of a JWKS document this validator can use; others are skipped
/// (an issuer may publish encryption keys or curves the host does not check).
///
/// # Errors
///
/// The document is not a JWKS.
pub fn parse_jwks(body: &[u8]) -> Result<(Vec<Key>, usize), String> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| format!("not a key set: {e}"))?;
    let total = set.keys.len();
    let keys = set
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .filter_map(|jwk| {
            let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
                ("RSA", _) => Material::Rsa { modulus: b64(jwk.n.as_deref())?, exponent: b64(jwk.e.as_deref())? },
                ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                    let size = if crv == "P-256" { 32 } else { 48 };
                    let (x, y) = (b64(jwk.x.as_deref())?, b64(jwk.y.as_deref())?);
                    if x.len() != size || y.len() != size {
                        return None;
                    }
                    Material::EcPoint([&[0x04][..], &x, &y].concat())
                }
                ("OKP", Some("Ed25519")) => Material::Ed25519(b64(jwk.x.as_deref())?),
                _ => return None,
            };
            Some(Key {
                kid: jwk.kid,
                alg: jwk.alg,
                for_signing: jwk.key_use.as_deref().is_none_or(|u| u == "sig"),
                key,
            })
        })
        .collect();
    Ok((keys, total))
}

/// The state key of an issuer's keys.
fn state_key(issuer: &str) -> String {
    let digest = Sha256::digest(issuer.as_bytes());
    format!("jwks:{}", hex(&digest[..16]))
}

/// Lower-case hex, two digits a byte (computed in every review: no `format!`
/// machinery and one allocation).
pub fn hex(bytes: &[u8]) -> String {
    let digit = |nibble: u8| char::from_digit(u32::from(nibble), 16).unwrap_or('0');
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(digit(byte >> 4));
        out.push(digit(byte & 0x0f));
    }
    out
}

/// Keys and when they were fetched, in a form cheap to read back: version,
/// time, then per key its type, `kid`, `alg`, `use` and key bytes, each
/// length-prefixed.
pub fn encode(fetched_at: i64, keys: &[Key]) -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend_from_slice(&fetched_at.to_be_bytes());
    out.extend_from_slice(&u32::try_from(keys.len()).unwrap_or(u32::MAX).to_be_bytes());
    let bytes = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(b);
    };
    for key in keys {
        let (kind, first, second): (u8, &[u8], &[u8]) = match &key.key {
            Material::Rsa { modulus, exponent } => (0, modulus, exponent),
            Material::EcPoint(point) => (1, point, &[]),
            Material::Ed25519(k) => (2, k, &[]),
        };
        out.push(kind);
        out.push(u8::from(key.for_signing));
        bytes(&mut out, key.kid.as_deref().unwrap_or("\u{0}").as_bytes());
        bytes(&mut out, key.alg.as_deref().unwrap_or("").as_bytes());
        bytes(&mut out, first);
        bytes(&mut out, second);
    }
    out
}

/// The inverse of [`encode`]; `None` for anything else.
pub fn decode(data: &[u8]) -> Option<(i64, Vec<Key>)> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
            self.0 = tail;
            Some(head)
        }
        fn u32(&mut self) -> Option<usize> {
            Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize)
        }
        fn bytes(&mut self) -> Option<&'a [u8]> {
            let n = self.u32()?;
            self.take(n)
        }
    }
    let mut r = Reader(data);
    if r.take(1)? != [1] {
        return None;
    }
    let fetched_at = i64::from_be_bytes(r.take(8)?.try_into().ok()?);
    let count = r.u32()?;
    let mut keys = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let kind = r.take(1)?[0];
        let for_signing = r.take(1)?[0] == 1;
        let kid = std::str::from_utf8(r.bytes()?).ok()?;
        let alg = std::str::from_utf8(r.bytes()?).ok()?;
        let (first, second) = (r.bytes()?.to_vec(), r.bytes()?.to_vec());
        let key = match kind {
            0 => Material::Rsa { modulus: first, exponent: second },
            1 => Material::EcPoint(first),
            2 => Material::Ed25519(first),
            _ => return None,
        };
        keys.push(Key {
            kid: (kid != "\u{0}").then(|| kid.to_string()),
            alg: (!alg.is_empty()).then(|| alg.to_string()),
            for_signing,
            key,
        });
    }
    Some((fetched_at, keys))
}

/// Keys fetched now or earlier.
pub struct KeySet {
    pub keys: Vec<Key>,
    /// Fetched for this review.
    pub fresh: bool,
}

fn unavailable(message: String) -> Stop {
    Stop::Fail(credbroker_sdk::Error::unavailable(message))
}

/// Fetch the discovery document and the JWKS of `source`.
fn fetch(host: &dyn Host, source: &Source<'_>) -> Result<Vec<Key>, Stop> {
    let discovery = host
        .get(source.discovery_url, None)
        .map_err(|e| Stop::host(&format!("discovery at {}", source.discovery_url), &e))?;
    if !(200..300).contains(&discovery.status) {
        return Err(unavailable(format!("discovery at {} answered {}", source.discovery_url, discovery.status)));
    }
    let document: serde_json::Value = serde_json::from_slice(&discovery.body)
        .map_err(|e| unavailable(format!("discovery at {} is not JSON: {e}", source.discovery_url)))?;
    let named = document["issuer"].as_str().unwrap_or("");
    let same = if source.lenient_issuer {
        named.trim_end_matches('/') == source.issuer.trim_end_matches('/')
    } else {
        named == source.issuer
    };
    if !same {
        return Err(Stop::Fail(credbroker_sdk::Error::misconfigured(format!(
            "the discovery document at {} names the issuer {named:?}, not {:?}",
            source.discovery_url, source.issuer
        ))));
    }
    let jwks_uri = document["jwks_uri"]
        .as_str()
        .ok_or_else(|| unavailable(format!("the discovery document at {} has no jwks_uri", source.discovery_url)))?;
    let response = host.get(jwks_uri, None).map_err(|e| Stop::host(&format!("the JWKS at {jwks_uri}"), &e))?;
    if !(200..300).contains(&response.status) {
        return Err(unavailable(format!("the JWKS at {jwks_uri} answered {}", response.status)));
    }
    let (keys, total) = parse_jwks(&response.body).map_err(|e| unavailable(format!("the JWKS at {jwks_uri}: {e}")))?;
    host.debug(&format!("fetched {} usable key(s) of {total} from {jwks_uri}", keys.len()));
    Ok(keys)
}

/// The keys of `source`: cached, or fetched when the cache is missing or old,
/// or when `refetch` asks and the last fetch is old enough.
///
/// # Errors
///
/// [`Stop::Fail`] when nothing is cached and the keys cannot be fetched.
pub fn keys(host: &dyn Host, source: &Source<'_>, refresh: Refresh, refetch: bool) -> Result<KeySet, Stop> {
    let key = state_key(source.issuer);
    let cached = host.load(&key).and_then(|data| decode(&data));
    let now = host.now();
    if let Some((fetched_at, keys)) = &cached {
        let age = now - fetched_at;
        let young = if refetch { age < refresh.min_refresh_seconds } else { age < refresh.cache_seconds };
        if young {
            return Ok(KeySet { keys: keys.clone(), fresh: false });
        }
    }
    match fetch(host, source) {
        Ok(keys) => {
            if let Err(e) = host.store(&key, &encode(now, &keys)) {
                host.warn(&format!("cannot cache the keys of {}: {}", source.issuer, e.describe()));
            }
            Ok(KeySet { keys, fresh: true })
        }
        Err(Stop::Fail(error)) if cached.is_some() && !refetch => {
            host.warn(&format!("keeping the cached keys of {}: {}", source.issuer, error.message()));
            let (_, keys) = cached.unwrap_or_default();
            Ok(KeySet { keys, fresh: false })
        }
        Err(stop) => Err(stop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn keys_round_trip_through_the_compact_form() {
        let keys = vec![
            Key {
                kid: Some("r".into()),
                alg: Some("RS256".into()),
                for_signing: true,
                key: Material::Rsa { modulus: vec![1; 256], exponent: vec![1, 0, 1] },
            },
            Key { kid: None, alg: None, for_signing: false, key: Material::EcPoint(vec![4; 65]) },
            Key { kid: Some(String::new()), alg: None, for_signing: true, key: Material::Ed25519(vec![9; 32]) },
        ];
        let (at, back) = decode(&encode(42, &keys)).unwrap();
        assert_eq!((at, back), (42, keys));
        assert!(decode(b"\x02junk").is_none());
        assert!(decode(&encode(1, &[])[..5]).is_none());
    }

    #[test]
    fn jwks_documents_keep_the_keys_the_host_can_check() {
        let body = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB", "alg": "RS256", "use": "sig"},
            {"kty": "EC", "crv": "P-256", "kid": "b", "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
            {"kty": "EC", "crv": "P-521", "kid": "c", "x": "AA", "y": "AA"},
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "n": "AQAB", "e": "AQAB", "use": "enc"},
            "not a key"
        ]});
        let (keys, total) = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(total, 6);
        let kids: Vec<_> = keys.iter().map(|k| (k.kid.clone().unwrap(), k.for_signing)).collect();
        assert_eq!(kids, [("a".into(), true), ("b".into(), true), ("enc".into(), false)]);
        assert!(matches!(&keys[1].key, Material::EcPoint(p) if p.len() == 65 && p[0] == 4));
        assert!(parse_jwks(b"{\"no\": 1}").is_err());
    }
}
