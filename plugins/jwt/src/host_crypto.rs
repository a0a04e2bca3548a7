//! jsonwebtoken's signature checks, computed by the host (`crypto`, contract
//! 0.1.2): RSA in pure wasm costs about a millisecond per review, natively a
//! few microseconds. jsonwebtoken keeps every other check (header, claims,
//! times, audiences); only the arithmetic moves.

use credbroker_sdk::crypto::{self, PublicKey, RsaPublicKey};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};

/// The provider; [`install`] makes it jsonwebtoken's default.
static HOST_CRYPTO: CryptoProvider =
    CryptoProvider { signer_factory: no_signing, verifier_factory: verifier, jwk_utils: JwkUtils::new_unimplemented() };

/// Make the host's signature checks jsonwebtoken's (once per instance; later
/// calls do nothing).
pub fn install() {
    let _ = HOST_CRYPTO.install_default();
}

/// A validator never signs.
fn no_signing(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let key = match (key.family(), key.kind()) {
        (AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            PublicKey::Rsa(RsaPublicKey { modulus: n.clone(), exponent: e.clone() })
        }
        (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => PublicKey::EcPoint(point.clone()),
        (AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(key)) => PublicKey::Ed25519(key.clone()),
        // HMAC never (a public key is no shared secret); RSA only from JWK components.
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(Box::new(HostVerifier { algorithm: *algorithm, key }))
}

struct HostVerifier {
    algorithm: Algorithm,
    key: PublicKey,
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for HostVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> std::result::Result<(), jsonwebtoken::signature::Error> {
        // The variants are named as in RFC 7518 (`RS256`, `EdDSA`, ...), which
        // is what the host expects; jsonwebtoken has no other name for them.
        let name = format!("{:?}", self.algorithm);
        match crypto::verify_signature(&name, &self.key, message, signature) {
            Ok(true) => Ok(()),
            _ => Err(jsonwebtoken::signature::Error::new()),
        }
    }
}

impl JwtVerifier for HostVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}
