//! `crypto`: signature checks computed by the host with ring.
//!
//! A validator checks a token signature on every review it answers; in wasm,
//! RSA's big-number arithmetic is an order of magnitude slower than natively.
//! The plugin passes the key, message and signature; the host only computes,
//! so the capability grants no authority and is always on. Keys shorter than
//! 2048 bits (RSA) are refused, like kube-apiserver's JWT authenticator does.

use std::sync::Arc;

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};
use wasmtime::component::Linker;

use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::bindings::crypto::{Host, PublicKey, add_to_linker};
use crate::bindings::types::HostError;
use crate::boundary::wire::WireSize;
use crate::boundary::{CapView, ViewOf};

/// The `crypto` capability.
pub struct Crypto;

/// A run's signature checks: pure computation, nothing held.
pub struct Verifier;

impl Capability for Crypto {
    const INTERFACE: &'static str = "crypto";
    const WHAT: &'static str = "check signatures at native speed";
    const GRANT: &'static str = "always granted";
    type Policy = ();
    type State = Verifier;

    fn configure(_: &mut GrantTable, _: &PluginSetup) -> Result<(), GrantError> {
        Ok(())
    }

    fn prepare(_: &Arc<()>) -> Verifier {
        Verifier
    }

    fn link(
        linker: &mut Linker<HostState>,
        view: fn(&mut HostState) -> CapView<'_, Self::State>,
    ) -> wasmtime::Result<()> {
        add_to_linker::<HostState, ViewOf<Self::State>>(linker, view)
    }
}

/// Longest RSA modulus accepted, in bytes (8192 bits, ring's bound).
const MAX_RSA_MODULUS: usize = 1024;

/// Longest message checked: a token is a few KiB, and hashing runs on the
/// server's async workers, outside the plugin's CPU-time account.
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// What a JOSE algorithm name means to ring.
enum Scheme {
    Rsa(&'static signature::RsaParameters),
    Ec(&'static signature::EcdsaVerificationAlgorithm),
    Ed25519,
}

fn scheme(algorithm: &str) -> Option<Scheme> {
    Some(match algorithm {
        "RS256" => Scheme::Rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => Scheme::Rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => Scheme::Rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
        "PS256" => Scheme::Rsa(&signature::RSA_PSS_2048_8192_SHA256),
        "PS384" => Scheme::Rsa(&signature::RSA_PSS_2048_8192_SHA384),
        "PS512" => Scheme::Rsa(&signature::RSA_PSS_2048_8192_SHA512),
        "ES256" => Scheme::Ec(&signature::ECDSA_P256_SHA256_FIXED),
        "ES384" => Scheme::Ec(&signature::ECDSA_P384_SHA384_FIXED),
        "EdDSA" => Scheme::Ed25519,
        _ => return None,
    })
}

/// Whether `signature` over `message` is valid under `key` with `algorithm`.
///
/// # Errors
///
/// [`HostError::Invalid`] for an unknown algorithm or a key that does not suit it.
pub fn verify_signature(algorithm: &str, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, HostError> {
    let scheme = scheme(algorithm)
        .ok_or_else(|| HostError::Invalid(format!("unsupported signature algorithm `{algorithm}`")))?;
    if message.len() > MAX_MESSAGE {
        return Err(HostError::Invalid(format!("a signed message is at most {MAX_MESSAGE} bytes")));
    }
    let mismatch = || HostError::Invalid(format!("the key does not suit {algorithm}"));
    let valid = match (scheme, key) {
        (Scheme::Rsa(parameters), PublicKey::Rsa(rsa)) => {
            check_rsa_key(&rsa.modulus, &rsa.exponent)?;
            RsaPublicKeyComponents { n: &rsa.modulus, e: &rsa.exponent }.verify(parameters, message, signature).is_ok()
        }
        (Scheme::Ec(ec), PublicKey::EcPoint(point)) => {
            check_ec_point(ec, point)?;
            let valid = UnparsedPublicKey::new(ec, point).verify(message, signature).is_ok();
            // ring reports a point off the curve as a failed verification:
            // tell a broken key from a forged signature (only when it failed,
            // so valid signatures cost nothing more).
            if !valid && !on_curve(ec, point) {
                return Err(HostError::Invalid(format!("the EC public key is not a point on the {algorithm} curve")));
            }
            valid
        }
        (Scheme::Ed25519, PublicKey::Ed25519(key)) => {
            if key.len() != 32 {
                return Err(HostError::Invalid("an Ed25519 key has 32 bytes".into()));
            }
            signature::ED25519.verify(key.as_slice().into(), message.into(), signature.into()).is_ok()
        }
        _ => return Err(mismatch()),
    };
    Ok(valid)
}

/// An RSA key ring can check with: a modulus of 2048 to 8192 bits and an odd
/// public exponent from 3 to 2^33 - 1. Outside that, ring reports a failed
/// verification; say what is wrong instead, so a broken JWKS is not mistaken
/// for a forged token.
fn check_rsa_key(modulus: &[u8], exponent: &[u8]) -> Result<(), HostError> {
    let modulus = &modulus[modulus.iter().take_while(|b| **b == 0).count()..];
    if modulus.len() < 256 {
        return Err(HostError::Invalid(format!(
            "an RSA key of {} bits is too short; 2048 at least",
            modulus.len() * 8
        )));
    }
    if modulus.len() > MAX_RSA_MODULUS {
        return Err(HostError::Invalid(format!("an RSA key of {} bits is too long; 8192 at most", modulus.len() * 8)));
    }
    let exponent = &exponent[exponent.iter().take_while(|b| **b == 0).count()..];
    let value =
        if exponent.len() <= 8 { exponent.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)) } else { u64::MAX };
    if !(3..(1u64 << 33)).contains(&value) || value % 2 == 0 {
        return Err(HostError::Invalid("an RSA public exponent must be odd, from 3 to 2^33 - 1".into()));
    }
    Ok(())
}

/// Whether `point` lies on the curve of `algorithm`: ring checks a peer's
/// point when agreeing a key with it, so agree with a throwaway key.
fn on_curve(algorithm: &'static signature::EcdsaVerificationAlgorithm, point: &[u8]) -> bool {
    let curve = if std::ptr::eq(algorithm, &signature::ECDSA_P256_SHA256_FIXED) {
        &ring::agreement::ECDH_P256
    } else {
        &ring::agreement::ECDH_P384
    };
    let rng = ring::rand::SystemRandom::new();
    let Ok(mine) = ring::agreement::EphemeralPrivateKey::generate(curve, &rng) else { return true };
    ring::agreement::agree_ephemeral(mine, &ring::agreement::UnparsedPublicKey::new(curve, point), |_| ()).is_ok()
}

/// ring reports a malformed point as a failed verification; say so instead,
/// so that a broken JWKS is not mistaken for a forged token.
fn check_ec_point(algorithm: &'static signature::EcdsaVerificationAlgorithm, point: &[u8]) -> Result<(), HostError> {
    let size = if std::ptr::eq(algorithm, &signature::ECDSA_P256_SHA256_FIXED) { 65 } else { 97 };
    if point.len() != size || point.first() != Some(&0x04) {
        return Err(HostError::Invalid(format!("an uncompressed EC point of {size} bytes (0x04 || x || y) is needed")));
    }
    Ok(())
}

impl Host for CapView<'_, Verifier> {
    async fn verify_signature(
        &mut self,
        algorithm: String,
        key: PublicKey,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, HostError>> {
        let size = algorithm.wire_size() + key.wire_size() + message.wire_size() + signature.wire_size();
        self.call("crypto.verify-signature", size, async |_, _| {
            Ok(verify_signature(&algorithm, &key, &message, &signature))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    use super::*;

    #[test]
    fn ecdsa_and_ed25519_signatures_are_checked() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let signed = pair.sign(&rng, b"header.payload").unwrap();
        let key = PublicKey::EcPoint(pair.public_key().as_ref().to_vec());
        assert!(matches!(verify_signature("ES256", &key, b"header.payload", signed.as_ref()), Ok(true)));
        assert!(matches!(verify_signature("ES256", &key, b"header.tampered", signed.as_ref()), Ok(false)));
        assert!(matches!(verify_signature("RS256", &key, b"m", signed.as_ref()), Err(HostError::Invalid(_))));
        assert!(matches!(verify_signature("HS256", &key, b"m", signed.as_ref()), Err(HostError::Invalid(_))));
        assert!(matches!(
            verify_signature("ES256", &PublicKey::EcPoint(vec![4; 10]), b"m", b"s"),
            Err(HostError::Invalid(_))
        ));

        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let key = PublicKey::Ed25519(pair.public_key().as_ref().to_vec());
        let signed = pair.sign(b"m");
        assert!(matches!(verify_signature("EdDSA", &key, b"m", signed.as_ref()), Ok(true)));
        assert!(matches!(verify_signature("EdDSA", &key, b"n", signed.as_ref()), Ok(false)));
        let short =
            PublicKey::Rsa(crate::bindings::crypto::RsaPublicKey { modulus: vec![0xc5; 128], exponent: vec![1, 0, 1] });
        assert!(matches!(verify_signature("RS256", &short, b"m", &[0; 128]), Err(HostError::Invalid(_))));
        let huge = vec![0u8; MAX_MESSAGE + 1];
        assert!(matches!(verify_signature("EdDSA", &key, &huge, signed.as_ref()), Err(HostError::Invalid(_))));
    }

    fn invalid(result: Result<bool, HostError>) -> String {
        match result {
            Err(HostError::Invalid(reason)) => reason,
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[tokio::test]
    async fn arguments_count_against_the_call_limit() {
        let mut run = crate::capabilities::testing::Run::builder().build();
        let key = PublicKey::Rsa(crate::bindings::crypto::RsaPublicKey {
            modulus: vec![0xc5; 40 * 1024 * 1024],
            exponent: vec![1, 0, 1],
        });
        let refused =
            run.view::<Crypto>().verify_signature("RS256".into(), key, b"m".to_vec(), vec![0; 256]).await.unwrap();
        assert!(matches!(refused, Err(HostError::Invalid(m)) if m.contains("`crypto.verify-signature`")));
    }

    #[test]
    fn unusable_keys_are_invalid_not_forged_signatures() {
        let rsa = |modulus: Vec<u8>, exponent: Vec<u8>| {
            PublicKey::Rsa(crate::bindings::crypto::RsaPublicKey { modulus, exponent })
        };
        let long = invalid(verify_signature("RS256", &rsa(vec![0xc5; 2048], vec![1, 0, 1]), b"m", &[0; 2048]));
        assert!(long.contains("16384 bits is too long"), "{long}");
        let exponent = invalid(verify_signature("RS256", &rsa(vec![0xc5; 256], vec![0xff; 4096]), b"m", &[0; 256]));
        assert!(exponent.contains("exponent"), "{exponent}");
        assert!(verify_signature("RS256", &rsa(vec![0xc5; 256], vec![2]), b"m", &[0; 256]).is_err());
        // A well-formed point off the P-256 curve.
        let mut off_curve = vec![4u8];
        off_curve.extend([1u8; 64]);
        let point = invalid(verify_signature("ES256", &PublicKey::EcPoint(off_curve), b"m", &[0; 64]));
        assert!(point.contains("not a point on the ES256 curve"), "{point}");
    }
}
