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
//!
//! Plugins pulled from an OCI registry are signed the way OCI artifacts are,
//! with cosign's key-based signatures ([`crate::plugin::cosign`]), and
//! trusted per registry: `[plugins.registries."HOST[:PORT]"]` says which
//! repositories may be pulled from it, which keys vouch for them, whether
//! signatures are required there, and how to reach it (a CA file, plain HTTP
//! for a loopback registry).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::keys::{self, KeyError, KeyKind, key_id};
use crate::plugin::reference::OciReference;
use crate::plugin::registry::Connection;
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
    /// Public keys (SPKI PEM) whose signatures are trusted: Ed25519 for
    /// plugin files, Ed25519 or ECDSA P-256 for OCI plugins.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// Registries OCI plugins may come from, by `host[:port]`. When there are
    /// none, any registry may be named; when there are some, only those.
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryPolicy>,
    /// How often `credbroker serve` re-resolves the tags of its OCI
    /// validators (a new digest is pulled, verified and loaded), in seconds.
    /// `serve.toml` only; default: only on `credbroker plugin update`.
    #[serde(default)]
    pub update_interval_seconds: Option<u64>,
}

/// `[plugins.registries."HOST[:PORT]"]`: the trust in one registry and how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegistryPolicy {
    /// Repositories that may be pulled from it: exact paths, or prefixes
    /// ending in `*` (`credbroker/*`). Default: all.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Keys whose cosign signatures vouch for its plugins (default: `[plugins] trusted-keys`).
    #[serde(default)]
    pub trusted_keys: Option<Vec<PathBuf>>,
    /// Whether its plugins must be signed (default: `[plugins] require-signatures`).
    #[serde(default)]
    pub require_signatures: Option<bool>,
    /// A PEM CA bundle that replaces the system roots for it.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Speak plain HTTP to it: only for a loopback registry (tests, a local mirror).
    #[serde(default)]
    pub insecure: bool,
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
    /// The registry is not among `[plugins.registries]`.
    #[error(
        "{reference}: the registry {registry} is not among the trusted registries ({}); add [plugins.registries.\"{registry}\"]",
        trusted.join(", ")
    )]
    RegistryNotTrusted {
        /// The reference.
        reference: String,
        /// Its registry.
        registry: String,
        /// The registries that are.
        trusted: Vec<String>,
    },
    /// The repository is not among its registry's `repositories`.
    #[error("{reference}: the repository {repository} is not among the repositories trusted in {registry} ({})", allowed.join(", "))]
    RepositoryNotTrusted {
        /// The reference.
        reference: String,
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The patterns that are allowed.
        allowed: Vec<String>,
    },
    /// No trusted cosign signature vouches for an OCI plugin.
    #[error(
        "{reference} is refused: {why}, and the configuration requires signatures by a trusted key (sign it with `credbroker plugin sign {reference} --key KEY`)"
    )]
    Unverified {
        /// The reference.
        reference: String,
        /// Why.
        why: crate::plugin::cosign::Unverified,
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
        let absolute = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        self.trusted_keys.iter_mut().for_each(absolute);
        for registry in self.registries.values_mut() {
            registry.trusted_keys.iter_mut().flatten().for_each(absolute);
            registry.ca_file.iter_mut().for_each(absolute);
        }
    }

    /// Check what can be checked without the network: registry names, plain
    /// HTTP only for loopback registries, repository patterns, the update interval.
    ///
    /// # Errors
    ///
    /// A message naming the entry and what to change.
    pub fn validate(&self) -> Result<(), String> {
        for (registry, policy) in &self.registries {
            let shown = crate::boundary::text::name(registry);
            if !crate::plugin::reference::is_registry(registry) || registry.to_ascii_lowercase() != *registry {
                return Err(format!(
                    "[plugins.registries.\"{shown}\"]: a registry is a lowercase host name or IP address with an optional :port"
                ));
            }
            if policy.insecure && !crate::plugin::reference::is_loopback_registry(registry) {
                return Err(format!(
                    "[plugins.registries.\"{shown}\"]: insecure (plain HTTP) is allowed only for a loopback registry \
                     (127.0.0.1, [::1], localhost): plugins and credentials would cross the network in the clear; \
                     give the registry TLS (ca-file for a private CA)"
                ));
            }
            if let Some(bad) =
                policy.repositories.iter().find(|r| r.is_empty() || r.trim_end_matches('*').contains('*'))
            {
                return Err(format!(
                    "[plugins.registries.\"{shown}\"]: repository pattern `{}` must be a path or a prefix ending in `*`",
                    crate::boundary::text::name(bad)
                ));
            }
        }
        if let Some(seconds) = self.update_interval_seconds {
            crate::config::check_range("update-interval-seconds", seconds, 1, 7 * 86_400)
                .map_err(|e| format!("[plugins] {e}"))?;
        }
        Ok(())
    }

    /// The policy of `reference`'s registry, after checking that the registry
    /// and repository may be used at all.
    ///
    /// # Errors
    ///
    /// [`SignatureError::RegistryNotTrusted`], [`SignatureError::RepositoryNotTrusted`].
    pub fn registry(&self, reference: &OciReference) -> Result<Option<&RegistryPolicy>, SignatureError> {
        if self.registries.is_empty() {
            return Ok(None);
        }
        let Some(policy) = self.registries.get(&reference.registry) else {
            return Err(SignatureError::RegistryNotTrusted {
                reference: reference.to_string(),
                registry: reference.registry.clone(),
                trusted: self.registries.keys().cloned().collect(),
            });
        };
        let matches = |pattern: &String| match pattern.strip_suffix('*') {
            Some(prefix) => reference.repository.starts_with(prefix),
            None => reference.repository == *pattern,
        };
        if !policy.repositories.is_empty() && !policy.repositories.iter().any(matches) {
            return Err(SignatureError::RepositoryNotTrusted {
                reference: reference.to_string(),
                registry: reference.registry.clone(),
                repository: reference.repository.clone(),
                allowed: policy.repositories.clone(),
            });
        }
        Ok(Some(policy))
    }

    /// How to reach `reference`'s registry.
    pub fn connection(&self, reference: &OciReference) -> Connection {
        match self.registries.get(&reference.registry) {
            Some(policy) => Connection { ca_file: policy.ca_file.clone(), insecure: policy.insecure },
            None => Connection::default(),
        }
    }

    /// Check an OCI plugin's signatures against its registry's keys.
    fn check_oci(
        &self,
        reference: &OciReference,
        record: &crate::plugin::store::StoredRef,
    ) -> Result<Trust, SignatureError> {
        let registry = self.registry(reference)?;
        let required = registry.and_then(|r| r.require_signatures).unwrap_or(self.require_signatures);
        if !required {
            return Ok(Trust::NotRequired);
        }
        let paths = registry.and_then(|r| r.trusted_keys.as_ref()).unwrap_or(&self.trusted_keys);
        let keys = paths.iter().map(|path| keys::verifying_key_of(path)).collect::<Result<Vec<_>, _>>()?;
        crate::plugin::cosign::verify(&record.signatures, &keys, reference, &record.manifest_digest)
            .map(Trust::SignedBy)
            .map_err(|why| SignatureError::Unverified { reference: reference.to_string(), why })
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
            PluginOrigin::Oci { reference, record, .. } => self.check_oci(reference, record),
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
            // P-256 keys vouch for OCI plugins only: file signatures are Ed25519.
            let public = keys::verifying_key_of(key_path)?;
            if public.kind != KeyKind::Ed25519 {
                continue;
            }
            let public = public.raw;
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
        let policy = TrustPolicy {
            require_signatures: true,
            trusted_keys: vec![dir.path().join("signer.pub")],
            ..TrustPolicy::default()
        };
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
    fn registries_are_checked_at_load_and_before_any_pull() {
        let policy: TrustPolicy = toml::from_str(
            r#"
[registries."registry.corp"]
repositories = ["credbroker/*", "tools/one"]
[registries."127.0.0.1:5000"]
insecure = true
"#,
        )
        .unwrap();
        policy.validate().unwrap();
        let reference = |r: &str| OciReference::parse(r).unwrap();
        assert!(policy.registry(&reference("oci://registry.corp/credbroker/ldap:1")).unwrap().is_some());
        assert!(policy.registry(&reference("oci://registry.corp/tools/one:1")).is_ok());
        let other_repo = policy.registry(&reference("oci://registry.corp/tools/two:1")).unwrap_err().to_string();
        assert!(other_repo.contains("the repository tools/two is not among the repositories trusted"), "{other_repo}");
        let other = policy.registry(&reference("oci://evil.example/credbroker/ldap:1")).unwrap_err().to_string();
        assert!(other.contains("the registry evil.example is not among the trusted registries"), "{other}");
        assert!(policy.connection(&reference("oci://127.0.0.1:5000/x:1")).insecure);

        let remote: TrustPolicy = toml::from_str("[registries.\"registry.corp\"]\ninsecure = true\n").unwrap();
        assert!(
            remote.validate().unwrap_err().contains("insecure (plain HTTP) is allowed only for a loopback registry")
        );
        assert!(TrustPolicy::default().registry(&reference("oci://anywhere.example/x:1")).unwrap().is_none());
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
