//! Plugins: finding one by name, path or OCI reference, knowing exactly
//! which bytes it is, and the one path from a reference to a verified,
//! prepared plugin ([`prepare`]) that `get`, `serve` and `doctor` share.
//!
//! - [`reference`]: `oci://REGISTRY/REPOSITORY:TAG` and `…@sha256:DIGEST`.
//! - [`artifact`]: the CNCF wasm artifact layout (manifest, config, layer).
//! - [`registry`]: pulling and pushing over the registry API.
//! - [`cosign`]: cosign's key-based signatures of OCI artifacts.
//! - [`store`]: pulled plugins, content-addressed, in the user data directory.

pub mod artifact;
pub mod cosign;
pub mod prepare;
pub mod reference;
pub mod registry;
pub mod store;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::bundled::{self, BundledPlugin};

/// Where a plugin's `.wasm` comes from.
#[derive(Debug, Clone)]
pub enum PluginOrigin {
    /// Compiled into this binary.
    Bundled(&'static BundledPlugin),
    /// A file: given by path, or installed in the user plugin directory.
    File(PathBuf),
    /// Pulled from an OCI registry and kept in the plugin store.
    Oci {
        /// The reference it was named by.
        reference: reference::OciReference,
        /// Where the store keeps its component.
        blob: PathBuf,
        /// What the reference resolved to: manifest, digests, signatures.
        record: Box<store::StoredRef>,
    },
}

/// A located plugin with its identity: the sha256 of its `.wasm`.
#[derive(Debug, Clone)]
pub struct PluginRef {
    /// How the user named it: a bundled or installed name, or the path.
    pub name: String,
    /// Where it comes from.
    pub origin: PluginOrigin,
    /// Lowercase hex sha256 of the `.wasm`.
    pub sha256: String,
    /// The `.wasm` bytes of a file plugin, kept from hashing so compiling does
    /// not read the file twice (and cannot see a different file).
    wasm: Option<Vec<u8>>,
}

/// A plugin that cannot be found or is not the one the operator pinned.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No bundled or installed plugin has this name.
    #[error("unknown plugin `{name}`; available: {}", available.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// Every name that exists.
        available: Vec<String>,
    },
    /// The file cannot be read.
    #[error("cannot read plugin `{}`: {}", path.display(), error.reason())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        error: crate::fsutil::ReadError,
    },
    /// The sha256 does not match the operator's pin.
    #[error("plugin `{name}` has sha256 {actual}, but the configuration pins {expected}; refusing to run it")]
    DigestMismatch {
        /// The plugin.
        name: String,
        /// The pinned digest.
        expected: String,
        /// The digest of the file found.
        actual: String,
    },
    /// The pin is not a sha256 in hex.
    #[error("the sha256 pin `{0}` is not 64 hex digits")]
    BadPin(String),
    /// The stored component of an OCI plugin is not the one its manifest names.
    #[error(
        "the stored component of {reference} has sha256 {actual}, but its manifest names {expected}: the store was \
         tampered with; refusing to run it (`credbroker plugin pull {reference}` fetches it again)"
    )]
    Tampered {
        /// The reference.
        reference: String,
        /// The digest the manifest names.
        expected: String,
        /// The digest of the stored file.
        actual: String,
    },
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `spec` names a file rather than a bundled or installed plugin or
/// an OCI artifact.
pub fn is_path(spec: &str) -> bool {
    !reference::is_oci(spec) && (spec.contains('/') || spec.ends_with(".wasm"))
}

impl PluginRef {
    /// Locate `spec`: a path (contains `/` or ends in `.wasm`), else a plugin
    /// installed as `NAME.wasm` in one of `plugin_dirs`, else a bundled plugin.
    ///
    /// # Errors
    ///
    /// [`PluginError::Unknown`] listing what exists, or
    /// [`PluginError::Unreadable`].
    pub fn locate(spec: &str, plugin_dirs: &[PathBuf]) -> Result<Self, PluginError> {
        if is_path(spec) {
            return Self::from_file(spec.to_string(), Path::new(spec));
        }
        for dir in plugin_dirs {
            let candidate = dir.join(format!("{spec}.wasm"));
            if candidate.is_file() {
                return Self::from_file(spec.to_string(), &candidate);
            }
        }
        if let Some(plugin) = bundled::find(spec) {
            return Ok(Self {
                name: spec.to_string(),
                origin: PluginOrigin::Bundled(plugin),
                sha256: plugin.sha256.to_string(),
                wasm: None,
            });
        }
        Err(PluginError::Unknown {
            name: crate::boundary::text::name(spec).into_owned(),
            available: available(plugin_dirs, None),
        })
    }

    /// The OCI plugin `reference` as the store has it: its digest from the
    /// ref file, its component not read until it is compiled.
    pub fn stored(reference: &reference::OciReference, record: store::StoredRef, store: &store::PluginStore) -> Self {
        Self {
            name: reference.to_string(),
            sha256: record.sha256().to_string(),
            origin: PluginOrigin::Oci {
                reference: reference.clone(),
                blob: store.blob_path(record.sha256()),
                record: Box::new(record),
            },
            wasm: None,
        }
    }

    fn from_file(name: String, path: &Path) -> Result<Self, PluginError> {
        let wasm = crate::fsutil::read_bounded(path, crate::fsutil::bounds::PLUGIN)
            .map_err(|error| PluginError::Unreadable { path: path.to_path_buf(), error })?;
        Ok(Self { name, origin: PluginOrigin::File(path.to_path_buf()), sha256: sha256_hex(&wasm), wasm: Some(wasm) })
    }

    /// Refuse to go on unless the plugin's sha256 is `pin`.
    ///
    /// # Errors
    ///
    /// [`PluginError::DigestMismatch`] naming both digests, or
    /// [`PluginError::BadPin`].
    pub fn verify_pin(&self, pin: &str) -> Result<(), PluginError> {
        let expected = pin.trim().trim_start_matches("sha256:").to_ascii_lowercase();
        if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PluginError::BadPin(pin.to_string()));
        }
        if expected != self.sha256 {
            return Err(PluginError::DigestMismatch { name: self.name.clone(), expected, actual: self.sha256.clone() });
        }
        Ok(())
    }

    /// The `.wasm` bytes.
    ///
    /// # Errors
    ///
    /// Never for bundled plugins or files read by [`locate`](Self::locate).
    pub fn wasm(&self) -> std::io::Result<Vec<u8>> {
        match (&self.wasm, &self.origin) {
            (Some(bytes), _) => Ok(bytes.clone()),
            (None, PluginOrigin::Bundled(plugin)) => Ok(plugin.wasm.to_vec()),
            (None, PluginOrigin::File(path)) => {
                crate::fsutil::read_bounded(path, crate::fsutil::bounds::PLUGIN).map_err(std::io::Error::other)
            }
            (None, PluginOrigin::Oci { blob, .. }) => {
                let wasm =
                    crate::fsutil::read_bounded(blob, crate::fsutil::bounds::PLUGIN).map_err(std::io::Error::other)?;
                // The bytes compiled are the bytes the manifest (and its signature) name.
                let actual = sha256_hex(&wasm);
                if actual != self.sha256 {
                    return Err(std::io::Error::other(PluginError::Tampered {
                        reference: self.name.clone(),
                        expected: self.sha256.clone(),
                        actual,
                    }));
                }
                Ok(wasm)
            }
        }
    }

    /// The files whose change means this plugin changed (what `serve` watches):
    /// the file and its signature, or an OCI plugin's ref file in the store.
    pub fn watched_files(&self, store: &store::PluginStore, signatures: bool) -> Vec<PathBuf> {
        match &self.origin {
            PluginOrigin::Bundled(_) => Vec::new(),
            PluginOrigin::File(path) if signatures => vec![path.clone(), crate::signing::signature_path(path)],
            PluginOrigin::File(path) => vec![path.clone()],
            PluginOrigin::Oci { reference, .. } => vec![store.record_path(reference)],
        }
    }
}

/// Names of the bundled plugins of `world` (any world when `None`) and of every
/// installed plugin, sorted, without duplicates.
pub fn available(plugin_dirs: &[PathBuf], world: Option<crate::contract::World>) -> Vec<String> {
    let mut names: Vec<String> = bundled::ALL
        .iter()
        .filter(|p| world.is_none_or(|w| p.worlds.contains(&w)))
        .map(|p| p.name.to_string())
        .collect();
    for dir in plugin_dirs {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "wasm")
                    && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                {
                    names.push(crate::boundary::text::name(stem).into_owned());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}
