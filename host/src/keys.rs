//! Ed25519 key files: the server's token signing keys and the keys plugins
//! are signed with. Private keys are PKCS#8 PEM (`BEGIN PRIVATE KEY`), public
//! keys SPKI PEM (`BEGIN PUBLIC KEY`), as `openssl genpkey -algorithm ed25519`
//! writes them.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{Ed25519KeyPair, KeyPair};
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
}
