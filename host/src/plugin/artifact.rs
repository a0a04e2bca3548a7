//! A plugin as an OCI artifact, in the CNCF "Wasm OCI Artifact" layout that
//! wkg, Spin and Kubewarden use: an OCI image manifest
//! (`application/vnd.oci.image.manifest.v1+json`) whose config is
//! `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component itself, `application/wasm`.
//!
//! ```json
//! {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
//!  "config":{"mediaType":"application/vnd.wasm.config.v0+json","digest":"sha256:…","size":…},
//!  "layers":[{"mediaType":"application/wasm","digest":"sha256:…","size":…}]}
//! ```
//!
//! The config says what the component is:
//!
//! ```json
//! {"created":"2026-05-01T12:00:00Z","author":null,"architecture":"wasm","os":"wasip2",
//!  "layerDigests":["sha256:…"],"component":{"exports":[…],"imports":[…],"target":null}}
//! ```
//!
//! (`oci-wasm`, the Bytecode Alliance crate for this layout, needs another
//! release of `oci-client` and TLS features that bring a second crypto
//! library, so the few types are written here.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::ComponentShape;

/// The manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is.
    pub media_type: String,
    /// `sha256:` and its hex digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Annotations (a cosign signature layer carries its signature here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    /// The descriptor of `bytes` as `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_string(),
            digest: digest_of(bytes),
            size: bytes.len() as u64,
            annotations: None,
        }
    }
}

/// An OCI image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The config of a wasm artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// When it was made (RFC 3339).
    pub created: String,
    /// Who made it.
    pub author: Option<String>,
    /// Always `wasm`.
    pub architecture: String,
    /// `wasip2` for a component.
    pub os: String,
    /// The digests of the layers.
    pub layer_digests: Vec<String>,
    /// The component's imports and exports.
    pub component: Option<ComponentInfo>,
}

/// What a component imports and exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// Export names.
    pub exports: Vec<String>,
    /// Import names.
    pub imports: Vec<String>,
    /// The world it targets, when known.
    pub target: Option<String>,
}

/// `sha256:` and the hex sha256 of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", super::sha256_hex(bytes))
}

/// A plugin ready to push: its config and manifest, serialised.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The config blob.
    pub config: Vec<u8>,
    /// The manifest.
    pub manifest: Vec<u8>,
}

/// The artifact of the component `wasm` with `shape`, made at `created`
/// (seconds since 1970).
pub fn build(wasm: &[u8], shape: &ComponentShape, created: i64) -> Artifact {
    let layer = Descriptor::of(LAYER_MEDIA_TYPE, wasm);
    let config = WasmConfig {
        created: crate::exec::credential::rfc3339(created),
        author: None,
        architecture: "wasm".into(),
        os: "wasip2".into(),
        layer_digests: vec![layer.digest.clone()],
        component: Some(ComponentInfo { exports: shape.exports.clone(), imports: shape.imports.clone(), target: None }),
    };
    // Serialising these plain structs cannot fail.
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        config: Descriptor::of(CONFIG_MEDIA_TYPE, &config),
        layers: vec![layer],
        annotations: Some(BTreeMap::from([(
            "org.opencontainers.image.created".to_string(),
            crate::exec::credential::rfc3339(created),
        )])),
    };
    Artifact { config, manifest: serde_json::to_vec(&manifest).unwrap_or_default() }
}

/// The component layer of the wasm artifact whose manifest is `manifest`.
///
/// # Errors
///
/// What makes it something other than a wasm artifact with one component.
pub fn wasm_layer(manifest: &[u8]) -> Result<Descriptor, String> {
    let manifest: Manifest =
        serde_json::from_slice(manifest).map_err(|e| format!("its manifest is not an OCI image manifest: {e}"))?;
    if manifest.schema_version != 2 {
        return Err(format!("its manifest has schemaVersion {}, not 2", manifest.schema_version));
    }
    if let Some(media_type) = &manifest.media_type
        && media_type != MANIFEST_MEDIA_TYPE
    {
        return Err(format!(
            "its manifest is a `{}`, not an OCI image manifest",
            crate::boundary::text::name(media_type)
        ));
    }
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(format!(
            "its config is `{}`, not `{CONFIG_MEDIA_TYPE}`: it is not a wasm artifact (a container image?)",
            crate::boundary::text::name(&manifest.config.media_type)
        ));
    }
    let mut wasm = manifest.layers.iter().filter(|l| l.media_type == LAYER_MEDIA_TYPE);
    let layer = match (wasm.next(), wasm.next()) {
        (Some(layer), None) => layer.clone(),
        (None, _) => return Err(format!("it has no `{LAYER_MEDIA_TYPE}` layer")),
        (Some(_), Some(_)) => return Err(format!("it has more than one `{LAYER_MEDIA_TYPE}` layer")),
    };
    if !super::reference::is_digest(&layer.digest) {
        return Err("its wasm layer's digest is not a sha256 digest".into());
    }
    if layer.size > crate::fsutil::bounds::PLUGIN {
        return Err(format!(
            "its wasm layer is {} bytes, over the limit of {}",
            layer.size,
            crate::fsutil::bounds::PLUGIN
        ));
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_artifact_is_read_back_as_its_component_layer() {
        let wasm = crate::bundled::find("static").unwrap().wasm;
        let shape = ComponentShape::parse(wasm).unwrap();
        let artifact = build(wasm, &shape, 1_700_000_000);
        let layer = wasm_layer(&artifact.manifest).unwrap();
        assert_eq!(layer.digest, digest_of(wasm));
        assert_eq!(layer.size, wasm.len() as u64);
        let config: WasmConfig = serde_json::from_slice(&artifact.config).unwrap();
        assert_eq!(config.os, "wasip2");
        assert_eq!(config.layer_digests, [layer.digest]);
        assert!(config.component.unwrap().exports.iter().any(|e| e.contains("credential-provider")));
        let json: serde_json::Value = serde_json::from_slice(&artifact.manifest).unwrap();
        assert_eq!(json["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(json["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(json["mediaType"], MANIFEST_MEDIA_TYPE);
    }

    #[test]
    fn other_artifacts_are_refused_with_why() {
        let image = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":1},"layers":[]}"#;
        assert!(wasm_layer(image.as_bytes()).unwrap_err().contains("not a wasm artifact"));
        let none = image.replace("application/vnd.oci.image.config.v1+json", CONFIG_MEDIA_TYPE);
        assert!(wasm_layer(none.as_bytes()).unwrap_err().contains("no `application/wasm` layer"));
        assert!(wasm_layer(b"<html>").unwrap_err().contains("not an OCI image manifest"));
    }
}
