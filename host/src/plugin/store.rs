//! The plugin store: OCI plugins pulled once and kept under the user data
//! directory (`~/.local/share/credbroker/oci/`, 0700), so that later runs
//! never touch the network.
//!
//! - `blobs/sha256/HEX`: a component, named by its sha256 (0600).
//! - `refs/KEY.json`: what one reference (`oci://…:TAG` or `…@sha256:…`)
//!   resolved to: the manifest (its bytes, so the chain from the reference
//!   to the component can be checked again offline), the component's
//!   digest, and the cosign signatures found with it (0600).
//!
//! A run reads one small ref file; it never reads or hashes the component
//! unless it compiles it, and then the component's sha256 must be the one
//! its manifest names. Ref files must be private files of the user (like
//! the artifact cache) and must describe the reference they are filed under;
//! a manifest that no longer hashes to its digest is refused.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::cosign::Signature;
use super::reference::OciReference;
use crate::fsutil;

/// Largest ref file read.
const MAX_RECORD: u64 = 1024 * 1024;

/// The store in one directory.
#[derive(Debug, Clone)]
pub struct PluginStore {
    dir: PathBuf,
}

/// What one reference resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRef {
    /// The reference, as `oci://…`.
    pub reference: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The manifest, base64.
    pub manifest: String,
    /// The component's digest, `sha256:HEX`.
    pub wasm_digest: String,
    /// The cosign signatures of the manifest found when it was pulled.
    pub signatures: Vec<Signature>,
    /// When the reference was last resolved (seconds since 1970).
    pub resolved_at: i64,
}

impl StoredRef {
    /// The component's sha256, hex.
    pub fn sha256(&self) -> &str {
        self.wasm_digest.trim_start_matches("sha256:")
    }
}

/// A store that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file of the store is not a private file of the user.
    #[error("`{}` is not a private file of yours (another user could have written it); remove it and pull again", path.display())]
    NotPrivate {
        /// The file.
        path: PathBuf,
    },
    /// A ref file does not describe its reference, or its manifest no
    /// longer matches its digest.
    #[error(
        "the stored copy of {reference} was altered ({why}); `credbroker plugin pull {reference}` fetches it again"
    )]
    Tampered {
        /// The reference.
        reference: String,
        /// What does not match.
        why: String,
    },
    /// Reading or writing failed.
    #[error("the plugin store `{}`: {error}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        error: String,
    },
}

impl PluginStore {
    /// The store in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The ref file of `reference`.
    pub fn record_path(&self, reference: &OciReference) -> PathBuf {
        let key = &super::sha256_hex(reference.to_string().as_bytes())[..32];
        self.dir.join("refs").join(format!("{key}.json"))
    }

    /// Where the component with sha256 `hex` is kept.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex)
    }

    /// What `reference` resolved to when last pulled, if it was.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the ref file is not private, unreadable, or altered.
    pub fn lookup(&self, reference: &OciReference) -> Result<Option<StoredRef>, StoreError> {
        let path = self.record_path(reference);
        let text = match fsutil::read_bounded(&path, MAX_RECORD) {
            Ok(text) => text,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(StoreError::Io { path, error: e.reason() }),
        };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if fsutil::is_private_file(&meta) => {}
            _ => return Err(StoreError::NotPrivate { path }),
        }
        let tampered = |why: String| StoreError::Tampered { reference: reference.to_string(), why };
        let record: StoredRef =
            serde_json::from_slice(&text).map_err(|e| tampered(format!("its ref file does not parse: {e}")))?;
        if record.reference != reference.to_string() {
            return Err(tampered(format!("its ref file is for {}", crate::boundary::text::name(&record.reference))));
        }
        check(&record).map_err(tampered)?;
        Ok(Some(record))
    }

    /// Keep `wasm` and what `reference` resolved to.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`].
    pub fn put(&self, reference: &OciReference, record: &StoredRef, wasm: &[u8]) -> Result<(), StoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error: String| StoreError::Io { path, error }
        };
        let blobs = self.dir.join("blobs/sha256");
        let refs = self.dir.join("refs");
        for dir in [&self.dir, &self.dir.join("blobs"), &blobs, &refs] {
            fsutil::ensure_private_dir(dir).map_err(|e| io(dir)(e.to_string()))?;
        }
        let blob = self.blob_path(record.sha256());
        let present = fsutil::read_bounded(&blob, fsutil::bounds::PLUGIN)
            .is_ok_and(|bytes| super::sha256_hex(&bytes) == record.sha256());
        if !present {
            fsutil::write_private_atomic(&blobs, record.sha256(), wasm).map_err(|e| io(&blob)(e.to_string()))?;
        }
        let path = self.record_path(reference);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let text = serde_json::to_vec_pretty(record).map_err(|e| io(&path)(e.to_string()))?;
        fsutil::write_private_atomic(&refs, &name, &text).map_err(|e| io(&path)(e.to_string()))
    }

    /// Every reference in the store, as far as its ref files can be read.
    pub fn records(&self) -> Vec<StoredRef> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("refs")) else { return Vec::new() };
        let mut records: Vec<StoredRef> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| fsutil::read_bounded(&e.path(), MAX_RECORD).ok())
            .filter_map(|text| serde_json::from_slice(&text).ok())
            .collect();
        records.sort_by(|a, b| a.reference.cmp(&b.reference));
        records
    }
}

/// Check that `record`'s manifest is the one its digest names and names its component.
fn check(record: &StoredRef) -> Result<(), String> {
    let manifest = STANDARD.decode(&record.manifest).map_err(|_| "its manifest is not base64".to_string())?;
    let digest = super::artifact::digest_of(&manifest);
    if digest != record.manifest_digest {
        return Err(format!("its manifest has digest {digest}, not {}", record.manifest_digest));
    }
    let layer = super::artifact::wasm_layer(&manifest)?;
    if layer.digest != record.wasm_digest {
        return Err(format!("its manifest names the component {}, not {}", layer.digest, record.wasm_digest));
    }
    Ok(())
}

// They check the files' modes.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record(reference: &OciReference, wasm: &[u8]) -> StoredRef {
        let shape = crate::contract::ComponentShape::parse(wasm).unwrap();
        let built = super::super::artifact::build(wasm, &shape, 0);
        StoredRef {
            reference: reference.to_string(),
            manifest_digest: super::super::artifact::digest_of(&built.manifest),
            manifest: STANDARD.encode(&built.manifest),
            wasm_digest: super::super::artifact::digest_of(wasm),
            signatures: Vec::new(),
            resolved_at: 0,
        }
    }

    #[test]
    fn a_stored_reference_reads_back_and_alterations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = PluginStore::new(dir.path().join("oci"));
        let reference = OciReference::parse("oci://registry.corp/credbroker/static:1").unwrap();
        assert_eq!(store.lookup(&reference).unwrap(), None);
        let wasm = crate::bundled::find("static").unwrap().wasm;
        let stored = record(&reference, wasm);
        store.put(&reference, &stored, wasm).unwrap();
        assert_eq!(store.lookup(&reference).unwrap(), Some(stored.clone()));
        assert_eq!(std::fs::read(store.blob_path(stored.sha256())).unwrap(), wasm);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.dir), 0o700);
        assert_eq!(mode(&store.record_path(&reference)), 0o600);
        assert_eq!(mode(&store.blob_path(stored.sha256())), 0o600);
        assert_eq!(store.records(), std::slice::from_ref(&stored));

        // Filed under another reference: refused.
        let other = OciReference::parse("oci://registry.corp/credbroker/static:2").unwrap();
        std::fs::copy(store.record_path(&reference), store.record_path(&other)).unwrap();
        assert!(store.lookup(&other).unwrap_err().to_string().contains("its ref file is for oci://"));
        // A manifest edited to name other bytes: refused.
        let mut edited = stored.clone();
        edited.wasm_digest = format!("sha256:{}", "0".repeat(64));
        std::fs::write(store.record_path(&reference), serde_json::to_vec(&edited).unwrap()).unwrap();
        let error = store.lookup(&reference).unwrap_err().to_string();
        assert!(error.contains("its manifest names the component"), "{error}");
        // Writable by others: refused.
        std::fs::write(store.record_path(&reference), serde_json::to_vec(&stored).unwrap()).unwrap();
        std::fs::set_permissions(store.record_path(&reference), std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(store.lookup(&reference), Err(StoreError::NotPrivate { .. })));
    }
}
