//! `crypto`: signature checks computed by the host with ring.
//!
//! A validator checks a token signature on every review it answers; in wasm,
//! RSA's big-number arithmetic is an order of magnitude slower than natively.
//! The plugin passes the key, message and signature; the host only computes,
//! so the capability grants no authority and is always on. Keys shorter than
//! 2048 bits (RSA) are refused, like kube-apiserver's JWT authenticator does.

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};

use super::PluginContext;
use crate::runtime::bindings::crypto::{Host, PublicKey};
use crate::runtime::bindings::types::HostError;

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
            let significant = rsa.modulus.iter().skip_while(|b| **b == 0).count();
            if significant < 256 {
                return Err(HostError::Invalid(format!(
                    "an RSA key of {} bits is too short; 2048 at least",
                    significant * 8
                )));
            }
            RsaPublicKeyComponents { n: &rsa.modulus, e: &rsa.exponent }.verify(parameters, message, signature).is_ok()
        }
        (Scheme::Ec(algorithm), PublicKey::EcPoint(point)) => {
            check_ec_point(algorithm, point)?;
            UnparsedPublicKey::new(algorithm, point).verify(message, signature).is_ok()
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

/// ring reports a malformed point as a failed verification; say so instead,
/// so that a broken JWKS is not mistaken for a forged token.
fn check_ec_point(algorithm: &'static signature::EcdsaVerificationAlgorithm, point: &[u8]) -> Result<(), HostError> {
    let size = if std::ptr::eq(algorithm, &signature::ECDSA_P256_SHA256_FIXED) { 65 } else { 97 };
    if point.len() != size || point.first() != Some(&0x04) {
        return Err(HostError::Invalid(format!("an uncompressed EC point of {size} bytes (0x04 || x || y) is needed")));
    }
    Ok(())
}

impl Host for PluginContext {
    async fn verify_signature(
        &mut self,
        algorithm: String,
        key: PublicKey,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, HostError>> {
        Ok(verify_signature(&algorithm, &key, &message, &signature))
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
        let short = PublicKey::Rsa(crate::runtime::bindings::crypto::RsaPublicKey {
            modulus: vec![0xc5; 128],
            exponent: vec![1, 0, 1],
        });
        assert!(matches!(verify_signature("RS256", &short, b"m", &[0; 128]), Err(HostError::Invalid(_))));
        let huge = vec![0u8; MAX_MESSAGE + 1];
        assert!(matches!(verify_signature("EdDSA", &key, &huge, signed.as_ref()), Err(HostError::Invalid(_))));
    }
}
