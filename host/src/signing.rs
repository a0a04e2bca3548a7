//! Plugin signatures: an operator decides which keys may vouch for plugin
//! files, and can refuse every file plugin no trusted key signed.
//!
//! A signature is an Ed25519 signature over the plugin's sha256 (with a
//! domain prefix, so it can never be mistaken for a signature over anything
//! else), kept beside the plugin as `NAME.wasm.sig`:
//!
//! ```json
//! {"format":"credbroker-plugin-signature/v1","sha256":"…","keyId":"…","signature":"…base64…"}
//! ```
//!
//! Bundled plugins are part of the binary the operator already trusts and are
//! never asked for a signature.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::keys::{self, KeyError, key_id};
use crate::plugin::{PluginOrigin, PluginRef};

/// The `format` of a signature file.
pub const FORMAT: &str = "credbroker-plugin-signature/v1";
/// What is signed: this prefix, then the 32 bytes of the plugin's sha256.
const DOMAIN: &[u8] = b"credbroker plugin signature v1\0";

/// `[plugins]` of either configuration file: which signatures count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TrustPolicy {
    /// Refuse plugin files without a valid signature by a trusted key.
    #[serde(default)]
    pub require_signatures: bool,
    /// Ed25519 public keys (SPKI PEM) whose signatures are trusted.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
}

/// A signature file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// The signed plugin's sha256, hex.
    pub sha256: String,
    /// The signing key's id ([`keys::key_id`]).
    pub key_id: String,
    /// The Ed25519 signature, base64.
    pub signature: String,
}

/// Why a plugin's signature is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// A trusted key file is unusable.
    #[error("trusted key {0}")]
    Key(#[from] KeyError),
    /// No signature file.
    #[error(
        "plugin `{name}` is not signed (no `{}`), and the configuration requires signatures; sign it with `credbroker plugin sign`",
        path.display()
    )]
    Unsigned {
        /// The plugin.
        name: String,
        /// Where the signature was looked for.
        path: PathBuf,
    },
    /// The signature file does not parse.
    #[error("plugin `{name}`: the signature file `{}` is malformed: {message}", path.display())]
    Malformed {
        /// The plugin.
        name: String,
        /// The signature file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The signature is for other bytes.
    #[error(
        "plugin `{name}`: the signature is for sha256 {signed}, but the file's sha256 is {actual}; refusing to run it"
    )]
    OtherDigest {
        /// The plugin.
        name: String,
        /// The digest the signature names.
        signed: String,
        /// The file's digest.
        actual: String,
    },
    /// Signed by a key the operator does not trust.
    #[error("plugin `{name}` is signed by key {key_id}, which is not among the trusted keys ({})", trusted.join(", "))]
    Untrusted {
        /// The plugin.
        name: String,
        /// The key that signed.
        key_id: String,
        /// The ids of the trusted keys.
        trusted: Vec<String>,
    },
    /// The signature does not verify.
    #[error("plugin `{name}`: the signature by key {key_id} does not verify; the plugin or its signature was altered")]
    Invalid {
        /// The plugin.
        name: String,
        /// The key that claims to have signed.
        key_id: String,
    },
}

/// The signature file of the plugin at `path`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".sig");
    PathBuf::from(name)
}

/// Sign the plugin whose sha256 is `sha256_hex` with `key`.
///
/// # Errors
///
/// When `sha256_hex` is not 64 hex digits.
pub fn sign(sha256_hex: &str, key: &ring::signature::Ed25519KeyPair) -> Result<SignatureFile, hex::FromHexError> {
    use ring::signature::KeyPair;
    let digest = digest_bytes(sha256_hex)?;
    let signature = key.sign(&message(&digest));
    Ok(SignatureFile {
        format: FORMAT.into(),
        sha256: sha256_hex.to_ascii_lowercase(),
        key_id: key_id(key.public_key().as_ref()),
        signature: STANDARD.encode(signature.as_ref()),
    })
}

fn digest_bytes(sha256_hex: &str) -> Result<[u8; 32], hex::FromHexError> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(sha256_hex, &mut digest)?;
    Ok(digest)
}

fn message(digest: &[u8; 32]) -> Vec<u8> {
    [DOMAIN, digest.as_slice()].concat()
}

/// What checking a plugin against the policy found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Compiled into this binary.
    Bundled,
    /// Signed by the trusted key with this id.
    SignedBy(String),
    /// Not checked: the policy does not require signatures.
    NotRequired,
}

impl TrustPolicy {
    /// Make relative key paths relative to `base` (the configuration's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        for key in &mut self.trusted_keys {
            if key.is_relative() {
                *key = base.join(&*key);
            }
        }
    }

    /// Whether `plugin` may run.
    ///
    /// # Errors
    ///
    /// [`SignatureError`] when signatures are required and the plugin's is
    /// missing, malformed, for other bytes, by an untrusted key, or invalid.
    pub fn check(&self, plugin: &PluginRef) -> Result<Trust, SignatureError> {
        match &plugin.origin {
            PluginOrigin::Bundled(_) => Ok(Trust::Bundled),
            PluginOrigin::File(_) if !self.require_signatures => Ok(Trust::NotRequired),
            PluginOrigin::File(path) => self.verify(&plugin.name, path, &plugin.sha256).map(Trust::SignedBy),
        }
    }

    /// Verify the signature beside the plugin file `path` whose sha256 is
    /// `sha256`; the signing key's id on success.
    ///
    /// # Errors
    ///
    /// See [`TrustPolicy::check`].
    pub fn verify(&self, name: &str, path: &Path, sha256: &str) -> Result<String, SignatureError> {
        let sig_path = signature_path(path);
        let malformed =
            |message: String| SignatureError::Malformed { name: name.into(), path: sig_path.clone(), message };
        let text = match crate::fsutil::read_bounded(&sig_path, 64 * 1024) {
            Ok(text) => text,
            Err(e) if e.is_not_found() => {
                return Err(SignatureError::Unsigned { name: name.into(), path: sig_path });
            }
            Err(e) => return Err(malformed(format!("cannot read it: {}", e.reason()))),
        };
        let file: SignatureFile = serde_json::from_slice(&text).map_err(|e| malformed(e.to_string()))?;
        if file.format != FORMAT {
            return Err(malformed(format!("format `{}` is not `{FORMAT}`", file.format)));
        }
        if !file.sha256.eq_ignore_ascii_case(sha256) {
            return Err(SignatureError::OtherDigest {
                name: name.into(),
                signed: file.sha256.clone(),
                actual: sha256.into(),
            });
        }
        let digest = digest_bytes(sha256).map_err(|e| malformed(e.to_string()))?;
        let signature = STANDARD.decode(&file.signature).map_err(|e| malformed(format!("signature: {e}")))?;
        let mut trusted = Vec::new();
        for key_path in &self.trusted_keys {
            let public = keys::public_key_of(key_path)?;
            let id = key_id(&public);
            if id == file.key_id {
                return UnparsedPublicKey::new(&ED25519, &public)
                    .verify(&message(&digest), &signature)
                    .map(|()| id)
                    .map_err(|_| SignatureError::Invalid { name: name.into(), key_id: file.key_id.clone() });
            }
            trusted.push(id);
        }
        Err(SignatureError::Untrusted { name: name.into(), key_id: file.key_id, trusted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
        plugin: PathBuf,
        policy: TrustPolicy,
        key: ring::signature::Ed25519KeyPair,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = keys::generate().unwrap();
        std::fs::write(dir.path().join("signer.pem"), private).unwrap();
        std::fs::write(dir.path().join("signer.pub"), public).unwrap();
        let plugin = dir.path().join("p.wasm");
        std::fs::write(&plugin, b"\0asm component bytes").unwrap();
        let key = keys::private_key_of(&dir.path().join("signer.pem")).unwrap();
        let policy = TrustPolicy { require_signatures: true, trusted_keys: vec![dir.path().join("signer.pub")] };
        Fixture { dir, plugin, policy, key }
    }

    fn sign_file(f: &Fixture) {
        let plugin = PluginRef::locate(f.plugin.to_str().unwrap(), &[]).unwrap();
        let sig = sign(&plugin.sha256, &f.key).unwrap();
        std::fs::write(signature_path(&f.plugin), serde_json::to_vec(&sig).unwrap()).unwrap();
    }

    fn check(f: &Fixture) -> Result<Trust, String> {
        let plugin = PluginRef::locate(f.plugin.to_str().unwrap(), &[]).unwrap();
        f.policy.check(&plugin).map_err(|e| e.to_string())
    }

    #[test]
    fn a_signed_plugin_runs_and_any_change_is_refused() {
        let f = fixture();
        assert!(check(&f).unwrap_err().contains("is not signed"));
        sign_file(&f);
        assert!(matches!(check(&f).unwrap(), Trust::SignedBy(_)));

        std::fs::write(&f.plugin, b"\0asm other bytes").unwrap();
        assert!(check(&f).unwrap_err().contains("the signature is for sha256"));

        // A signature file edited to name the new digest no longer verifies.
        let new_digest = PluginRef::locate(f.plugin.to_str().unwrap(), &[]).unwrap().sha256;
        let mut sig: SignatureFile =
            serde_json::from_slice(&std::fs::read(signature_path(&f.plugin)).unwrap()).unwrap();
        sig.sha256 = new_digest;
        std::fs::write(signature_path(&f.plugin), serde_json::to_vec(&sig).unwrap()).unwrap();
        assert!(check(&f).unwrap_err().contains("does not verify"));
    }

    #[test]
    fn untrusted_keys_and_garbage_are_refused_and_nothing_is_asked_when_not_required() {
        let mut f = fixture();
        sign_file(&f);
        let (_, other) = keys::generate().unwrap();
        std::fs::write(f.dir.path().join("other.pub"), other).unwrap();
        f.policy.trusted_keys = vec![f.dir.path().join("other.pub")];
        assert!(check(&f).unwrap_err().contains("which is not among the trusted keys"));

        std::fs::write(signature_path(&f.plugin), b"not json").unwrap();
        assert!(check(&f).unwrap_err().contains("is malformed"));

        f.policy.require_signatures = false;
        assert_eq!(check(&f).unwrap(), Trust::NotRequired);
        let bundled = PluginRef::locate("static", &[]).unwrap();
        f.policy.require_signatures = true;
        assert_eq!(f.policy.check(&bundled).unwrap(), Trust::Bundled);
    }
}
