//! A compact JWS as go-oidc reads one for kube-apiserver: three base64url
//! parts, a header naming the algorithm (and the key), a JSON object of
//! claims; plus the checks on the registered claims once the signature holds.

use base64::Engine as _;
use serde_json::{Map, Value};

/// A signature algorithm this validator can check (the host's `crypto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    /// kube-apiserver accepts every algorithm it knows for
    /// AuthenticationConfiguration issuers; ES512 is one the host cannot check.
    pub const KUBE_DEFAULT: &[Algorithm] = &[
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];

    /// The flat settings' default.
    pub const LEGACY_DEFAULT: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

    /// The JOSE name (RFC 7518), as the host's `crypto` expects it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm named `name`.
    ///
    /// # Errors
    ///
    /// `none`, HMAC (a public key is no shared secret) and unknown names.
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            "none" => return Err("`alg: none` is never accepted".into()),
            n if n.starts_with("HS") => return Err(format!("HMAC ({n}) is never accepted for issuer tokens")),
            "ES512" => return Err("ES512 (P-521) cannot be checked by this credbroker".into()),
            other => return Err(format!("algorithm `{other}` is not supported")),
        })
    }

    /// The key type the algorithm needs (JWK `kty`).
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => "RSA",
            Algorithm::ES256 | Algorithm::ES384 => "EC",
            Algorithm::EdDSA => "OKP",
        }
    }
}

/// A token split and decoded, nothing checked yet.
#[derive(Debug)]
pub struct Jws<'a> {
    pub alg: String,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    /// `header.payload`, what the signature covers.
    pub signed: &'a [u8],
    pub signature: Vec<u8>,
}

fn decode(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()
}

impl<'a> Jws<'a> {
    /// Split and decode `token`.
    ///
    /// # Errors
    ///
    /// Why it is not a compact JWS with a JSON header and a JSON object of claims.
    pub fn parse(token: &'a str) -> Result<Self, String> {
        if token.trim_start().starts_with('{') {
            return Err("not a JWT: a JSON-serialized JWS is not accepted, only the compact form".into());
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a JWT: a JWT has three parts separated by dots".into());
        };
        let header: Value = decode(header)
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or("not a JWT: the header is not base64url-encoded JSON")?;
        let claims = match decode(payload).and_then(|p| serde_json::from_slice::<Value>(&p).ok()) {
            Some(Value::Object(claims)) => claims,
            _ => return Err("not a JWT: the payload is not a base64url-encoded JSON object".into()),
        };
        let signature = decode(signature).ok_or("not a JWT: the signature is not base64url")?;
        let alg = header["alg"].as_str().ok_or("the JWT header names no algorithm (`alg`)")?.to_string();
        if header.get("crit").is_some() {
            return Err(
                "the JWT header has critical extensions (`crit`), which this validator does not understand".into()
            );
        }
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err("the JWT header's `kid` is not a string".into()),
        };
        let signed_len = token.len() - signature_len(token);
        Ok(Self { alg, kid, claims, signed: &token.as_bytes()[..signed_len], signature })
    }

    /// The issuer the token claims, unverified (`accounts.google.com` is
    /// Google's legacy spelling of `https://accounts.google.com`, as in
    /// kube-apiserver).
    pub fn untrusted_issuer(&self) -> Option<&str> {
        match self.claims.get("iss")?.as_str()? {
            "accounts.google.com" => Some("https://accounts.google.com"),
            iss => Some(iss),
        }
    }
}

/// Bytes of `.signature` at the end of `token`.
fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

/// How a token's times are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Times {
    /// Seconds past `exp` a token is still accepted.
    pub exp_leeway: i64,
    /// Seconds before `nbf` a token is already accepted.
    pub nbf_leeway: i64,
    /// Seconds into the future an `iat` may lie, when checked.
    pub iat_leeway: Option<i64>,
}

impl Times {
    /// go-oidc's, as kube-apiserver checks: `exp` exactly, `nbf` with a
    /// minute's leeway, `iat` not at all.
    pub const KUBE: Times = Times { exp_leeway: 0, nbf_leeway: 60, iat_leeway: None };
}

/// A claim that must be a number (a JSON number: go-oidc reads it as seconds).
fn seconds(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(format!("the `{name}` claim is not a number")),
    }
}

/// The token's audiences: `aud` is a string or a list of strings.
pub fn audiences(claims: &Map<String, Value>) -> Result<Vec<&str>, String> {
    match claims.get("aud") {
        None => Ok(Vec::new()),
        Some(Value::String(aud)) => Ok(vec![aud.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|a| a.as_str().ok_or_else(|| "`aud` is not a string or a list of strings".to_string()))
            .collect(),
        Some(_) => Err("`aud` is not a string or a list of strings".into()),
    }
}

/// The checks on the registered claims once the signature holds: audience
/// (any of `accepted`), expiry, not-before, issued-at, and the types go-oidc
/// insists on.
///
/// # Errors
///
/// Why the token is refused.
pub fn check_claims(claims: &Map<String, Value>, accepted: &[String], times: Times, now: i64) -> Result<(), String> {
    let audiences = audiences(claims)?;
    if !audiences.iter().any(|a| accepted.iter().any(|b| b == a)) {
        return Err(format!("the token's audience {audiences:?} is none of the accepted audiences {accepted:?}"));
    }
    let now = now as f64;
    let Some(exp) = seconds(claims, "exp")? else {
        return Err("the token has no expiry (`exp`)".into());
    };
    if exp + (times.exp_leeway as f64) < now {
        return Err(format!("the token expired at {exp} (now {now})"));
    }
    if let Some(nbf) = seconds(claims, "nbf")?
        && now + (times.nbf_leeway as f64) < nbf
    {
        return Err(format!("the token is not valid before {nbf} (now {now})"));
    }
    let iat = seconds(claims, "iat")?;
    if let (Some(iat), Some(leeway)) = (iat, times.iat_leeway)
        && iat > now + leeway as f64
    {
        return Err("the token was issued in the future".into());
    }
    for name in ["iss", "sub"] {
        if claims.get(name).is_some_and(|v| !v.is_string()) {
            return Err(format!("the `{name}` claim is not a string"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(value: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn compact_tokens_split_into_their_parts() {
        let token =
            format!("{}.{}.c2ln", b64(&json!({"alg": "RS256", "kid": "k1"})), b64(&json!({"iss": "https://i"})));
        let jws = Jws::parse(&token).unwrap();
        assert_eq!(
            (jws.alg.as_str(), jws.kid.as_deref(), jws.signature.as_slice()),
            ("RS256", Some("k1"), b"sig".as_slice())
        );
        assert_eq!(jws.signed, token.rsplit_once('.').unwrap().0.as_bytes());
        assert_eq!(jws.untrusted_issuer(), Some("https://i"));
        let google = format!("{}.{}.c2ln", b64(&json!({"alg": "RS256"})), b64(&json!({"iss": "accounts.google.com"})));
        assert_eq!(Jws::parse(&google).unwrap().untrusted_issuer(), Some("https://accounts.google.com"));
    }

    #[test]
    fn malformed_tokens_say_why() {
        let header = b64(&json!({"alg": "RS256"}));
        for (token, why) in [
            ("{\"payload\": 1}".to_string(), "JSON-serialized"),
            ("a.b".to_string(), "three parts"),
            (format!("{header}.{}.c2ln", b64(&json!([1]))), "JSON object"),
            (format!("{header}.{}=.c2ln", b64(&json!({}))), "JSON object"),
            (format!("{header}.{}.x", b64(&json!({}))), "signature is not base64url"),
            (format!("{}.{}.c2ln", b64(&json!({"alg": "RS256", "crit": ["exp"]})), b64(&json!({}))), "critical"),
            (format!("{}.{}.c2ln", b64(&json!({"kid": "k"})), b64(&json!({}))), "names no algorithm"),
        ] {
            let err = Jws::parse(&token).unwrap_err();
            assert!(err.contains(why), "{token}: {err}");
        }
    }

    #[test]
    fn registered_claims_are_checked_like_go_oidc() {
        let aud = vec!["a".to_string()];
        let ok = |c: Value| check_claims(c.as_object().unwrap(), &aud, Times::KUBE, 1000);
        assert!(ok(json!({"aud": "a", "exp": 1000})).is_ok(), "exp == now is still valid");
        assert!(ok(json!({"aud": "a", "exp": 999})).unwrap_err().contains("expired"));
        assert!(ok(json!({"aud": ["x", "a"], "exp": 2000, "nbf": 1059})).is_ok(), "nbf with a minute of leeway");
        assert!(ok(json!({"aud": "a", "exp": 2000, "nbf": 1061})).unwrap_err().contains("not valid before"));
        assert!(ok(json!({"aud": "a", "exp": 2000, "iat": 5000})).is_ok(), "iat is not checked");
        assert!(ok(json!({"aud": "b", "exp": 2000})).unwrap_err().contains("audience"));
        assert!(ok(json!({"aud": 1, "exp": 2000})).unwrap_err().contains("aud"));
        assert!(ok(json!({"aud": "a"})).unwrap_err().contains("no expiry"));
        assert!(ok(json!({"aud": "a", "exp": "2000"})).unwrap_err().contains("not a number"));
        assert!(ok(json!({"aud": "a", "exp": 2000, "sub": 5})).unwrap_err().contains("`sub`"));
        let legacy = Times { exp_leeway: 60, nbf_leeway: 60, iat_leeway: Some(60) };
        let c = json!({"aud": "a", "exp": 950, "iat": 1100});
        assert!(check_claims(c.as_object().unwrap(), &aud, legacy, 1000).unwrap_err().contains("future"));
    }

    #[test]
    fn dangerous_algorithms_are_refused() {
        assert!(Algorithm::parse("none").unwrap_err().contains("never"));
        assert!(Algorithm::parse("HS256").unwrap_err().contains("HMAC"));
        assert!(Algorithm::parse("ES512").unwrap_err().contains("P-521"));
        assert_eq!(Algorithm::parse("PS256"), Ok(Algorithm::PS256));
    }
}
