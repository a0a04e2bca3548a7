//! Key files: the server's token signing keys (Ed25519) and the keys plugins
//! are signed with (Ed25519, or ECDSA P-256 as cosign's default keys). Private
//! keys are PKCS#8 PEM (`BEGIN PRIVATE KEY`), public keys SPKI PEM (`BEGIN
//! PUBLIC KEY`), as `openssl genpkey -algorithm ed25519` (or `-algorithm EC
//! -pkeyopt ec_paramgen_curve:P-256`) and `cosign public-key` write them.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
    UnparsedPublicKey,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("`{}`: {message}", path.display())]
pub struct KeyError {
    /// The key file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (OID 1.3.101.112); the
/// 32-byte key follows.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The DER prefix of an ECDSA P-256 SubjectPublicKeyInfo (id-ecPublicKey,
/// prime256v1); the 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The kinds of key plugins can be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Ed25519: file signatures (`.wasm.sig`) and OCI signatures.
    Ed25519,
    /// ECDSA on P-256 with SHA-256, cosign's default key type: OCI signatures.
    EcdsaP256,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ed25519 => "Ed25519",
            Self::EcdsaP256 => "ECDSA P-256",
        })
    }
}

/// A public key that plugin signatures are checked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// What kind of key.
    pub kind: KeyKind,
    /// The raw key: 32 bytes (Ed25519) or the 65-byte uncompressed point (P-256).
    pub raw: Vec<u8>,
}

impl PublicKey {
    /// Its [`key_id`].
    pub fn id(&self) -> String {
        key_id(&self.raw)
    }

    /// Whether `signature` is this key's over `message` (ECDSA: ASN.1 DER
    /// over the SHA-256 of `message`, as cosign signs; Ed25519: over `message`).
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm: &dyn ring::signature::VerificationAlgorithm = match self.kind {
            KeyKind::Ed25519 => &ED25519,
            KeyKind::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
        };
        UnparsedPublicKey::new(algorithm, &self.raw).verify(message, signature).is_ok()
    }

    /// The key as SPKI PEM (`BEGIN PUBLIC KEY`).
    pub fn to_pem(&self) -> String {
        let prefix: &[u8] = match self.kind {
            KeyKind::Ed25519 => &SPKI_PREFIX,
            KeyKind::EcdsaP256 => &P256_SPKI_PREFIX,
        };
        pem("PUBLIC KEY", &[prefix, &self.raw].concat())
    }
}

/// A private key that signs plugins.
pub enum SigningKey {
    /// Ed25519.
    Ed25519(Ed25519KeyPair),
    /// ECDSA P-256 with SHA-256.
    EcdsaP256(EcdsaKeyPair),
}

impl SigningKey {
    /// Its public key.
    pub fn public(&self) -> PublicKey {
        match self {
            Self::Ed25519(pair) => PublicKey { kind: KeyKind::Ed25519, raw: pair.public_key().as_ref().to_vec() },
            Self::EcdsaP256(pair) => PublicKey { kind: KeyKind::EcdsaP256, raw: pair.public_key().as_ref().to_vec() },
        }
    }

    /// Sign `message` (see [`PublicKey::verifies`] for the forms).
    ///
    /// # Errors
    ///
    /// Only when the system's random source fails (ECDSA).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        match self {
            Self::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Self::EcdsaP256(pair) => Ok(pair.sign(&ring::rand::SystemRandom::new(), message)?.as_ref().to_vec()),
        }
    }
}

/// The signing key in a private key file: Ed25519 or ECDSA P-256, PKCS#8 PEM.
///
/// # Errors
///
/// [`KeyError`] when the file cannot be read or holds neither.
pub fn signing_key_of(path: &Path) -> Result<SigningKey, KeyError> {
    let bad = |message: String| KeyError { path: path.to_path_buf(), message };
    let pem = crate::fsutil::read_bounded(path, crate::fsutil::bounds::SMALL)
        .map_err(|e| bad(format!("cannot read: {}", e.reason())))?;
    let private = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|_| {
        bad("holds no PKCS#8 private key (BEGIN PRIVATE KEY); convert an `EC PRIVATE KEY` with \
             `openssl pkcs8 -topk8 -nocrypt`"
            .into())
    })?;
    let der = private.secret_pkcs8_der();
    if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
        return Ok(SigningKey::Ed25519(pair));
    }
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der, &ring::rand::SystemRandom::new())
        .map(SigningKey::EcdsaP256)
        .map_err(|_| bad("is neither an Ed25519 nor an ECDSA P-256 private key".into()))
}

/// The public key in a key file (a public key, or a private key's public
/// half): Ed25519 or ECDSA P-256.
///
/// # Errors
///
/// [`KeyError`] when the file cannot be read or holds neither.
pub fn verifying_key_of(path: &Path) -> Result<PublicKey, KeyError> {
    let bad = |message: String| KeyError { path: path.to_path_buf(), message };
    let pem = crate::fsutil::read_bounded(path, crate::fsutil::bounds::SMALL)
        .map_err(|e| bad(format!("cannot read: {}", e.reason())))?;
    if PrivatePkcs8KeyDer::from_pem_slice(&pem).is_ok() {
        return signing_key_of(path).map(|key| key.public());
    }
    let public = SubjectPublicKeyInfoDer::from_pem_slice(&pem).map_err(|_| bad("holds no PEM key".into()))?;
    let der = public.as_ref();
    if der.len() == 44 && der[..12] == SPKI_PREFIX {
        return Ok(PublicKey { kind: KeyKind::Ed25519, raw: der[12..].to_vec() });
    }
    if der.len() == 91 && der[..26] == P256_SPKI_PREFIX {
        return Ok(PublicKey { kind: KeyKind::EcdsaP256, raw: der[26..].to_vec() });
    }
    Err(bad("is neither an Ed25519 nor an ECDSA P-256 public key".into()))
}

/// A new key of `kind`: the private key as PKCS#8 PEM and the public key as SPKI PEM.
///
/// # Errors
///
/// Only when the system's random source fails.
pub fn generate_of(kind: KeyKind) -> Result<(String, String), ring::error::Unspecified> {
    match kind {
        KeyKind::Ed25519 => generate(),
        KeyKind::EcdsaP256 => {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)?;
            let public = PublicKey { kind: KeyKind::EcdsaP256, raw: pair.public_key().as_ref().to_vec() };
            Ok((pem("PRIVATE KEY", pkcs8.as_ref()), public.to_pem()))
        }
    }
}

/// A short, stable name for a public key: hex of the first 8 bytes of its sha256.
pub fn key_id(public: &[u8]) -> String {
    hex::encode(&ring::digest::digest(&ring::digest::SHA256, public).as_ref()[..8])
}

/// The raw 32-byte public key of an Ed25519 key file (private or public PEM).
///
/// # Errors
///
/// [`KeyError`] when the file cannot be read or holds no Ed25519 key.
pub fn public_key_of(path: &Path) -> Result<Vec<u8>, KeyError> {
    let bad = |message: String| KeyError { path: path.to_path_buf(), message };
    let pem = crate::fsutil::read_bounded(path, crate::fsutil::bounds::SMALL)
        .map_err(|e| bad(format!("cannot read: {}", e.reason())))?;
    if let Ok(private) = PrivatePkcs8KeyDer::from_pem_slice(&pem) {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(private.secret_pkcs8_der())
            .map_err(|_| bad("is not an Ed25519 private key".into()))?;
        return Ok(pair.public_key().as_ref().to_vec());
    }
    let public = SubjectPublicKeyInfoDer::from_pem_slice(&pem).map_err(|_| bad("holds no PEM key".into()))?;
    let der = public.as_ref();
    if der.len() != 44 || der[..12] != SPKI_PREFIX {
        return Err(bad("is not an Ed25519 public key".into()));
    }
    Ok(der[12..].to_vec())
}

/// The Ed25519 key pair of a private key file.
///
/// # Errors
///
/// [`KeyError`] when the file cannot be read or holds no Ed25519 private key.
pub fn private_key_of(path: &Path) -> Result<Ed25519KeyPair, KeyError> {
    let bad = |message: String| KeyError { path: path.to_path_buf(), message };
    let pem = crate::fsutil::read_bounded(path, crate::fsutil::bounds::SMALL)
        .map_err(|e| bad(format!("cannot read: {}", e.reason())))?;
    let private = PrivatePkcs8KeyDer::from_pem_slice(&pem)
        .map_err(|_| bad("holds no private key (PKCS#8 PEM, BEGIN PRIVATE KEY)".into()))?;
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(private.secret_pkcs8_der())
        .map_err(|_| bad("is not an Ed25519 private key".into()))
}

/// A new Ed25519 key: the private key as PKCS#8 PEM and the public key as SPKI PEM.
///
/// # Errors
///
/// Only when the system's random source fails.
pub fn generate() -> Result<(String, String), ring::error::Unspecified> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())?;
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok((pem("PRIVATE KEY", pkcs8.as_ref()), pem("PUBLIC KEY", &spki)))
}

/// `der` as PEM with 64-character lines.
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_read_back_as_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = generate().unwrap();
        std::fs::write(dir.path().join("k.pem"), private).unwrap();
        std::fs::write(dir.path().join("k.pub"), public).unwrap();
        let from_private = public_key_of(&dir.path().join("k.pem")).unwrap();
        assert_eq!(from_private, public_key_of(&dir.path().join("k.pub")).unwrap());
        assert_eq!(private_key_of(&dir.path().join("k.pem")).unwrap().public_key().as_ref(), from_private);
        let err = private_key_of(&dir.path().join("k.pub")).unwrap_err().to_string();
        assert!(err.contains("holds no private key"), "{err}");
    }

    #[test]
    fn both_signing_kinds_sign_and_verify_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        for kind in [KeyKind::Ed25519, KeyKind::EcdsaP256] {
            let (private, public) = generate_of(kind).unwrap();
            std::fs::write(dir.path().join("k.pem"), private).unwrap();
            std::fs::write(dir.path().join("k.pub"), public).unwrap();
            let key = signing_key_of(&dir.path().join("k.pem")).unwrap();
            let verifying = verifying_key_of(&dir.path().join("k.pub")).unwrap();
            assert_eq!(verifying, key.public());
            assert_eq!(verifying_key_of(&dir.path().join("k.pem")).unwrap(), verifying);
            assert_eq!(verifying.kind, kind);
            let signature = key.sign(b"payload").unwrap();
            assert!(verifying.verifies(b"payload", &signature), "{kind}");
            assert!(!verifying.verifies(b"other", &signature), "{kind}");
        }
        // The P-256 public key is the SPKI openssl and cosign write.
        let (_, public) = generate_of(KeyKind::EcdsaP256).unwrap();
        let der = SubjectPublicKeyInfoDer::from_pem_slice(public.as_bytes()).unwrap();
        assert_eq!(der.as_ref().len(), 91);
        std::fs::write(dir.path().join("junk.pub"), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .unwrap();
        let err = verifying_key_of(&dir.path().join("junk.pub")).unwrap_err().to_string();
        assert!(err.contains("neither an Ed25519 nor an ECDSA P-256 public key"), "{err}");
    }
}
