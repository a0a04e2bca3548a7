//! Native tests of the whole decision: a fake host standing in for the
//! sandbox (an IdP's discovery, JWKS and claims endpoints served from memory,
//! the validator's state in a map, signatures checked with ring as the host's
//! `crypto` checks them) and signing keys generated per test run.

mod cel_speed;
mod decisions;
mod kube_token;
mod kube_validation;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use base64::Engine as _;
use credbroker_sdk::HostError;
use credbroker_sdk::crypto::PublicKey;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

use crate::host::{Host, Response, Settings};
use crate::review::Authenticator;

/// kube-apiserver's test clock: `now`, an hour later (`VALID`), an hour before (`EXPIRED`).
pub const NOW: i64 = 1_257_894_000;
pub const VALID: i64 = NOW + 3600;
pub const EXPIRED: i64 = NOW - 3600;

/// Settings from pairs.
pub struct MapSettings(pub BTreeMap<String, String>);

impl MapSettings {
    pub fn of(pairs: &[(&str, &str)]) -> Self {
        Self(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

impl Settings for MapSettings {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    fn keys(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

type Handler = Box<dyn Fn(Option<&str>) -> Result<Response, HostError>>;

/// The host of a test: routes by URL, state in memory, a settable clock.
pub struct FakeHost {
    pub now: Cell<i64>,
    routes: RefCell<HashMap<String, Handler>>,
    /// Every request made: URL and bearer.
    pub requests: RefCell<Vec<(String, Option<String>)>>,
    pub state: RefCell<HashMap<String, Vec<u8>>>,
    pub log: RefCell<Vec<String>>,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self {
            now: Cell::new(NOW),
            routes: RefCell::default(),
            requests: RefCell::default(),
            state: RefCell::default(),
            log: RefCell::default(),
        }
    }
}

impl FakeHost {
    /// Answer `url` with `handler` (given the bearer).
    pub fn route(&self, url: &str, handler: impl Fn(Option<&str>) -> Result<Response, HostError> + 'static) {
        self.routes.borrow_mut().insert(url.to_string(), Box::new(handler));
    }

    /// Answer `url` with `status` and `body`.
    pub fn serve(&self, url: &str, status: u16, body: impl Into<Vec<u8>>) {
        let body = body.into();
        self.route(url, move |_| Ok(Response { status, body: body.clone() }));
    }

    /// An issuer at `issuer` publishing `keys`: discovery at `discovery`
    /// (default the well-known path), the JWKS at `issuer/keys`.
    pub fn issuer(&self, issuer: &str, keys: &[&TestKey]) {
        let discovery = format!("{}/.well-known/openid-configuration", issuer.strip_suffix('/').unwrap_or(issuer));
        self.issuer_at(issuer, &discovery, keys);
    }

    pub fn issuer_at(&self, issuer: &str, discovery: &str, keys: &[&TestKey]) {
        let jwks_uri = format!("{}/keys", issuer.trim_end_matches('/'));
        self.serve(discovery, 200, json!({"issuer": issuer, "jwks_uri": jwks_uri}).to_string());
        self.publish(&jwks_uri, keys);
    }

    pub fn publish(&self, jwks_uri: &str, keys: &[&TestKey]) {
        let set = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
        self.serve(jwks_uri, 200, set.to_string());
    }

    pub fn hits(&self, url: &str) -> usize {
        self.requests.borrow().iter().filter(|(u, _)| u == url).count()
    }
}

impl Host for FakeHost {
    fn now(&self) -> i64 {
        self.now.get()
    }

    fn get(&self, url: &str, bearer: Option<&str>) -> Result<Response, HostError> {
        self.requests.borrow_mut().push((url.to_string(), bearer.map(str::to_string)));
        match self.routes.borrow().get(url) {
            Some(handler) => handler(bearer),
            None => Ok(Response { status: 404, body: b"not found".to_vec() }),
        }
    }

    fn load(&self, key: &str) -> Option<Vec<u8>> {
        self.state.borrow().get(key).cloned()
    }

    fn store(&self, key: &str, value: &[u8]) -> Result<(), HostError> {
        self.state.borrow_mut().insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn forget(&self, key: &str) {
        self.state.borrow_mut().remove(key);
    }

    fn verify(&self, algorithm: &str, key: &PublicKey, message: &[u8], sig: &[u8]) -> Result<bool, HostError> {
        verify_like_the_host(algorithm, key, message, sig)
    }

    fn debug(&self, message: &str) {
        self.log.borrow_mut().push(message.to_string());
    }

    fn warn(&self, message: &str) {
        self.log.borrow_mut().push(format!("WARN {message}"));
    }
}

/// The host's `crypto` capability (host/src/capabilities/crypto.rs), with ring.
fn verify_like_the_host(algorithm: &str, key: &PublicKey, message: &[u8], sig: &[u8]) -> Result<bool, HostError> {
    let invalid = |m: &str| Err(HostError::Invalid(m.to_string()));
    let rsa = |params: &'static signature::RsaParameters| -> Result<bool, HostError> {
        let PublicKey::Rsa(k) = key else { return invalid("the key does not suit RSA") };
        if k.modulus.iter().skip_while(|b| **b == 0).count() < 256 {
            return invalid("an RSA key under 2048 bits");
        }
        Ok(signature::RsaPublicKeyComponents { n: &k.modulus, e: &k.exponent }.verify(params, message, sig).is_ok())
    };
    let ec = |alg: &'static signature::EcdsaVerificationAlgorithm| -> Result<bool, HostError> {
        let PublicKey::EcPoint(p) = key else { return invalid("the key does not suit ECDSA") };
        Ok(signature::UnparsedPublicKey::new(alg, p).verify(message, sig).is_ok())
    };
    match algorithm {
        "RS256" => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
        "PS256" => rsa(&signature::RSA_PSS_2048_8192_SHA256),
        "PS384" => rsa(&signature::RSA_PSS_2048_8192_SHA384),
        "PS512" => rsa(&signature::RSA_PSS_2048_8192_SHA512),
        "ES256" => ec(&signature::ECDSA_P256_SHA256_FIXED),
        "ES384" => ec(&signature::ECDSA_P384_SHA384_FIXED),
        "EdDSA" => match key {
            PublicKey::Ed25519(k) => {
                Ok(signature::UnparsedPublicKey::new(&signature::ED25519, k).verify(message, sig).is_ok())
            }
            _ => invalid("the key does not suit EdDSA"),
        },
        other => invalid(&format!("unsupported signature algorithm `{other}`")),
    }
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, &'static str),
    Ed(Ed25519KeyPair),
}

/// A signing key with its JWK identity.
pub struct TestKey {
    pub kid: String,
    pub alg: &'static str,
    pair: Pair,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA private key (PKCS#1 DER) from openssl: ring cannot generate RSA keys.
fn rsa_der(n: usize) -> Vec<u8> {
    static KEYS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0..2)
            .map(|_| {
                let out = std::process::Command::new("openssl")
                    .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-outform", "DER"])
                    .output()
                    .expect("openssl (the tests generate RSA keys with it)");
                assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
                out.stdout
            })
            .collect()
    })[n]
        .clone()
}

impl TestKey {
    /// RSA key `n` (0 or 1) signing with `alg` (RS* or PS*).
    pub fn rsa(n: usize, kid: &str, alg: &'static str) -> Self {
        let pair = RsaKeyPair::from_der(&rsa_der(n)).expect("rsa key");
        Self { kid: kid.into(), alg, pair: Pair::Rsa(pair) }
    }

    pub fn ec(kid: &str, alg: &'static str) -> Self {
        let (signing, crv) = match alg {
            "ES256" => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256"),
            _ => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384"),
        };
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).expect("ec key");
        let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).expect("ec key");
        Self { kid: kid.into(), alg, pair: Pair::Ec(pair, crv) }
    }

    pub fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("ed25519 key");
        Self { kid: kid.into(), alg: "EdDSA", pair: Pair::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key")) }
    }

    /// The same key under another algorithm (kube-apiserver's "correct key, other alg").
    pub fn with_alg(n: usize, kid: &str, alg: &'static str) -> Self {
        Self::rsa(n, kid, alg)
    }

    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Rsa(pair) => {
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({"kty": "RSA", "kid": self.kid, "alg": self.alg, "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Pair::Ec(pair, crv) => {
                let point = pair.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                json!({"kty": "EC", "kid": self.kid, "crv": crv, "alg": self.alg,
                       "x": b64(&point[1..=half]), "y": b64(&point[1 + half..])})
            }
            Pair::Ed(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": b64(pair.public_key().as_ref())})
            }
        }
    }

    /// A compact JWS of `claims` (a JSON object, or raw JSON text).
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&json!({"alg": self.alg, "kid": self.kid, "typ": "JWT"}), claims)
    }

    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let rng = SystemRandom::new();
        let sig = match &self.pair {
            Pair::Rsa(pair) => {
                let padding: &dyn signature::RsaEncoding = match self.alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &rng, input.as_bytes(), &mut sig).expect("rsa sign");
                sig
            }
            Pair::Ec(pair, _) => pair.sign(&rng, input.as_bytes()).expect("ec sign").as_ref().to_vec(),
            Pair::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }
}

/// The validator built from `settings`, or why not.
pub fn load(settings: &[(&str, &str)]) -> Result<Authenticator, String> {
    crate::settings::load(&MapSettings::of(settings)).map_err(|e| e.message().to_string())
}

/// Why the validator of `settings` does not load.
#[track_caller]
pub fn load_err(settings: &[(&str, &str)]) -> String {
    match load(settings) {
        Ok(_) => panic!("{settings:?} loads"),
        Err(e) => e,
    }
}

/// The validator of an AuthenticationConfiguration whose `jwt` list is `jwt` (YAML).
pub fn load_yaml(jwt: &str) -> Result<Authenticator, String> {
    load(&[("authentication-config", &config(jwt))])
}

/// An AuthenticationConfiguration around a `jwt:` list.
pub fn config(jwt: &str) -> String {
    format!("apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n{jwt}")
}

/// What a review decided, in the terms of the test tables.
#[derive(Debug, PartialEq)]
pub enum Decision {
    User { name: String, uid: Option<String>, groups: Vec<String>, extra: Vec<(String, Vec<String>)> },
    Rejected(String),
    Fault(String),
}

pub fn decide(authenticator: &Authenticator, host: &FakeHost, token: &str) -> Decision {
    match authenticator.review(host, token) {
        Ok(credbroker_sdk::ReviewOutcome::Authenticated(a)) => {
            Decision::User { name: a.user.username, uid: a.user.uid, groups: a.user.groups, extra: a.user.extra }
        }
        Ok(credbroker_sdk::ReviewOutcome::Rejected(why)) => Decision::Rejected(why),
        Err(e) => Decision::Fault(format!("{e:?}")),
    }
}

/// A user without uid or extra.
pub fn user(name: &str, groups: &[&str]) -> Decision {
    Decision::User {
        name: name.into(),
        uid: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Vec::new(),
    }
}
