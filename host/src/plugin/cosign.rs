//! Signatures of OCI artifacts in cosign's key-based form, so that `cosign
//! verify --key` accepts what `credbroker plugin sign` writes and credbroker
//! accepts what `cosign sign --key` writes.
//!
//! A signature of the manifest with digest `sha256:HEX` lives in the same
//! repository under the tag `sha256-HEX.sig`: an OCI image manifest whose
//! layers are each one signature. A layer's blob is the "simple signing"
//! payload (`application/vnd.dev.cosign.simplesigning.v1+json`):
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"registry.corp/credbroker/corp-ldap"},
//!  "image":{"docker-manifest-digest":"sha256:HEX"},"type":"cosign container image signature"},
//!  "optional":null}
//! ```
//!
//! and its annotation `dev.cosignproject.cosign/signature` is the base64
//! signature of those exact bytes: ECDSA P-256 over their SHA-256, ASN.1 DER
//! (cosign's default keys), or Ed25519 over the bytes. No transparency log
//! entry is made, so `cosign verify` needs `--insecure-ignore-tlog=true`.
//!
//! A signature counts when a trusted key verifies it, its type is cosign's,
//! it names the manifest's digest, and its `docker-reference` is the
//! repository the plugin is pulled from (a signature for a staging
//! repository does not vouch for the same bytes under another name).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::artifact::{Descriptor, MANIFEST_MEDIA_TYPE, Manifest};
use super::reference::OciReference;
use crate::keys::{PublicKey, SigningKey};

/// The media type of a signature layer.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload's `critical.type`.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// The media type of a signature manifest's config (cosign's).
pub const SIGNATURE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// One signature as kept in the plugin store: the payload and the signature
/// over it, both base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The simple signing payload, base64.
    pub payload: String,
    /// The signature over it, base64.
    pub signature: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    critical: Critical,
    optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The tag the signatures of `manifest_digest` live under: `sha256-HEX.sig`.
pub fn signature_tag(manifest_digest: &str) -> String {
    format!("{}.sig", manifest_digest.replace(':', "-"))
}

/// The simple signing payload for the manifest `manifest_digest` of `reference`'s repository.
pub fn payload(reference: &OciReference, manifest_digest: &str) -> Vec<u8> {
    let payload = Payload {
        critical: Critical {
            identity: Identity { docker_reference: reference.repository_path() },
            image: Image { docker_manifest_digest: manifest_digest.to_string() },
            kind: SIGNATURE_TYPE.to_string(),
        },
        optional: None,
    };
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// Sign the manifest `manifest_digest` of `reference` with `key`.
///
/// # Errors
///
/// Only when the system's random source fails.
pub fn sign(
    reference: &OciReference,
    manifest_digest: &str,
    key: &SigningKey,
) -> Result<Signature, ring::error::Unspecified> {
    let payload = payload(reference, manifest_digest);
    let signature = key.sign(&payload)?;
    Ok(Signature { payload: STANDARD.encode(&payload), signature: STANDARD.encode(signature) })
}

/// The signature layers of a signature manifest: each payload's descriptor
/// with its base64 signature.
///
/// # Errors
///
/// When `manifest` is not an image manifest.
pub fn layers(manifest: &[u8]) -> Result<Vec<(Descriptor, String)>, String> {
    let manifest: Manifest =
        serde_json::from_slice(manifest).map_err(|e| format!("the signature manifest does not parse: {e}"))?;
    Ok(manifest
        .layers
        .into_iter()
        .filter(|layer| layer.media_type == PAYLOAD_MEDIA_TYPE)
        .filter_map(|layer| {
            let signature = layer.annotations.as_ref()?.get(SIGNATURE_ANNOTATION)?.clone();
            Some((layer, signature))
        })
        .collect())
}

/// The signature manifest holding `signatures` (and its config blob), as cosign writes it.
pub fn manifest(signatures: &[Signature]) -> (Vec<u8>, Vec<u8>) {
    let layers: Vec<Descriptor> = signatures
        .iter()
        .map(|s| {
            let payload = STANDARD.decode(&s.payload).unwrap_or_default();
            let mut layer = Descriptor::of(PAYLOAD_MEDIA_TYPE, &payload);
            layer.annotations = Some(BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), s.signature.clone())]));
            layer
        })
        .collect();
    let config = serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
        "config": {},
    });
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        config: Descriptor::of(SIGNATURE_CONFIG_MEDIA_TYPE, &config),
        layers,
        annotations: None,
    };
    (config, serde_json::to_vec(&manifest).unwrap_or_default())
}

/// Why no signature vouches for an artifact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    /// There are no signatures.
    #[error("it is not signed (no signature under the tag `{tag}`)")]
    Unsigned {
        /// Where signatures are looked for.
        tag: String,
    },
    /// Signatures exist, but no trusted key made any of them.
    #[error(
        "none of its {count} signature(s) is by a trusted key (trusted: {}); it was signed with another key",
        if trusted.is_empty() { "none".to_string() } else { trusted.join(", ") }
    )]
    Untrusted {
        /// How many signatures there are.
        count: usize,
        /// The ids of the trusted keys.
        trusted: Vec<String>,
    },
    /// A trusted key made a signature, but for something else.
    #[error("a signature by trusted key {key_id} is for {what}, not this plugin")]
    OtherSubject {
        /// The key.
        key_id: String,
        /// What the signature is for.
        what: String,
    },
}

/// The id of the first of `keys` that made one of `signatures` over
/// `manifest_digest` in `reference`'s repository.
///
/// # Errors
///
/// [`Unverified`] saying why none counts.
pub fn verify(
    signatures: &[Signature],
    keys: &[PublicKey],
    reference: &OciReference,
    manifest_digest: &str,
) -> Result<String, Unverified> {
    if signatures.is_empty() {
        return Err(Unverified::Unsigned { tag: signature_tag(manifest_digest) });
    }
    let mut other_subject = None;
    for signature in signatures {
        let (Ok(payload), Ok(bytes)) = (STANDARD.decode(&signature.payload), STANDARD.decode(&signature.signature))
        else {
            continue;
        };
        let Some(key) = keys.iter().find(|key| key.verifies(&payload, &bytes)) else { continue };
        let what = match serde_json::from_slice::<Payload>(&payload) {
            Ok(p) if p.critical.kind != SIGNATURE_TYPE => {
                format!("a payload of type `{}`", crate::boundary::text::name(&p.critical.kind))
            }
            Ok(p) if p.critical.image.docker_manifest_digest != manifest_digest => {
                format!("the manifest {}", crate::boundary::text::name(&p.critical.image.docker_manifest_digest))
            }
            Ok(p) if p.critical.identity.docker_reference != reference.repository_path() => {
                format!("the repository {}", crate::boundary::text::name(&p.critical.identity.docker_reference))
            }
            Ok(_) => return Ok(key.id()),
            Err(_) => "a payload that does not parse".to_string(),
        };
        other_subject = Some(Unverified::OtherSubject { key_id: key.id(), what });
    }
    Err(other_subject.unwrap_or_else(|| Unverified::Untrusted {
        count: signatures.len(),
        trusted: keys.iter().map(PublicKey::id).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyKind, generate_of};

    fn key(kind: KeyKind) -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = generate_of(kind).unwrap();
        std::fs::write(dir.path().join("k.pem"), private).unwrap();
        crate::keys::signing_key_of(&dir.path().join("k.pem")).unwrap()
    }

    #[test]
    fn signatures_verify_only_for_their_key_digest_and_repository() {
        let reference = OciReference::parse("oci://registry.corp/credbroker/corp-ldap:1.4").unwrap();
        let digest = format!("sha256:{}", "b".repeat(64));
        for kind in [KeyKind::EcdsaP256, KeyKind::Ed25519] {
            let signer = key(kind);
            let signature = sign(&reference, &digest, &signer).unwrap();
            let trusted = [signer.public()];
            assert_eq!(
                verify(std::slice::from_ref(&signature), &trusted, &reference, &digest),
                Ok(signer.public().id())
            );
            let other = key(kind).public();
            let wrong_key = verify(std::slice::from_ref(&signature), &[other], &reference, &digest).unwrap_err();
            assert!(matches!(wrong_key, Unverified::Untrusted { count: 1, .. }), "{wrong_key}");
            let other_digest = format!("sha256:{}", "c".repeat(64));
            let moved = verify(std::slice::from_ref(&signature), &trusted, &reference, &other_digest).unwrap_err();
            assert!(moved.to_string().contains("is for the manifest sha256:bbbb"), "{moved}");
            let elsewhere = OciReference::parse("oci://registry.corp/staging/corp-ldap:1.4").unwrap();
            let renamed = verify(&[signature], &trusted, &elsewhere, &digest).unwrap_err();
            assert!(
                renamed.to_string().contains("is for the repository registry.corp/credbroker/corp-ldap"),
                "{renamed}"
            );
        }
        assert!(matches!(verify(&[], &[], &reference, &digest), Err(Unverified::Unsigned { .. })));
    }

    #[test]
    fn the_payload_and_manifest_are_cosigns() {
        let reference = OciReference::parse("oci://registry.corp/credbroker/corp-ldap:1.4").unwrap();
        let digest = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            String::from_utf8(payload(&reference, &digest)).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"registry.corp/credbroker/corp-ldap"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        assert_eq!(signature_tag(&digest), format!("sha256-{}.sig", "b".repeat(64)));
        let signature = sign(&reference, &digest, &key(KeyKind::EcdsaP256)).unwrap();
        let (_, manifest) = manifest(std::slice::from_ref(&signature));
        let found = layers(&manifest).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, signature.signature);
        assert_eq!(found[0].0.media_type, PAYLOAD_MEDIA_TYPE);
    }
}
