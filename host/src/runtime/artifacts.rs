//! Precompiled plugin artifacts, cached in the user cache directory.
//!
//! Compiling a plugin takes tens of milliseconds; loading a precompiled one
//! takes well under one. An artifact is filed under the sha256 of its `.wasm`
//! and the engine's compatibility fingerprint, so a changed plugin or a
//! different credbroker build never picks up a stale one. Each file carries a
//! sha256 of its own content, checked before wasmtime sees it: a truncated,
//! corrupted or tampered artifact is recompiled, never executed.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::fsutil;

const MAGIC: &[u8; 8] = b"CBCWASM1";
const HEADER: usize = MAGIC.len() + 32;

/// Why a cached artifact was not used (it is then recompiled).
#[derive(Debug, thiserror::Error)]
enum Rejected {
    #[error("not found")]
    Missing,
    #[error("not a private regular file of the current user")]
    NotPrivate,
    #[error("checksum mismatch (truncated, corrupted or tampered with)")]
    Checksum,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("wasmtime refused it: {0}")]
    Wasmtime(wasmtime::Error),
}

/// The artifact cache of one engine.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
    fingerprint: String,
}

impl ArtifactCache {
    /// A cache in `dir` for artifacts of `engine`. With `None`, or when `dir`
    /// cannot be made private, plugins are compiled on every run.
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let dir = dir.and_then(|d| match fsutil::ensure_private_dir(&d) {
            Ok(_) => Some(d),
            Err(e) => {
                tracing::warn!("not caching compiled plugins: {e}");
                None
            }
        });
        Self {
            dir,
            fingerprint: super::engine::compatibility_fingerprint(engine),
        }
    }

    /// Where the artifact for `digest` lives.
    pub fn path_for(&self, digest: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{digest}-{}.cwasm", self.fingerprint)))
    }

    /// Load the artifact for the plugin with sha256 `digest`, compiling
    /// `wasm()` and caching the result when there is no usable one.
    ///
    /// # Errors
    ///
    /// When the plugin does not compile (not a valid component).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        wasm: impl FnOnce() -> std::io::Result<Vec<u8>>,
    ) -> Result<Component, CompileError> {
        let path = self.path_for(digest);
        if let Some(path) = &path {
            match load(engine, path) {
                Ok(component) => return Ok(component),
                Err(Rejected::Missing) => {}
                Err(reason) => tracing::warn!(
                    "ignoring cached artifact `{}`: {reason}; recompiling",
                    path.display()
                ),
            }
        }
        let wasm = wasm().map_err(CompileError::Read)?;
        let started = std::time::Instant::now();
        let artifact = engine
            .precompile_component(&wasm)
            .map_err(CompileError::Invalid)?;
        tracing::debug!(
            "compiled plugin {digest} ({} bytes) in {} ms",
            wasm.len(),
            started.elapsed().as_millis()
        );
        if let (Some(path), Some(dir)) = (&path, &self.dir) {
            let mut file = Vec::with_capacity(HEADER + artifact.len());
            file.extend_from_slice(MAGIC);
            file.extend_from_slice(&Sha256::digest(&artifact));
            file.extend_from_slice(&artifact);
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if let Err(e) = fsutil::write_private_atomic(dir, name, &file) {
                tracing::warn!(
                    "cannot cache the compiled plugin in `{}`: {e}",
                    dir.display()
                );
            }
        }
        // SAFETY: `artifact` was produced by `precompile_component` of this very
        // engine a moment ago, in memory.
        unsafe { Component::deserialize(engine, &artifact) }.map_err(CompileError::Invalid)
    }
}

fn load(engine: &Engine, path: &Path) -> Result<Component, Rejected> {
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Rejected::Missing),
        Err(e) => return Err(Rejected::Io(e)),
    };
    if !fsutil::is_private_file(&file.metadata()?) {
        return Err(Rejected::NotPrivate);
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Rejected::Checksum);
    }
    let (header, payload) = bytes.split_at(HEADER);
    if Sha256::digest(payload).as_slice() != &header[MAGIC.len()..] {
        return Err(Rejected::Checksum);
    }
    // SAFETY: the payload is byte for byte what `precompile_component` wrote
    // (checked above against the digest stored with it, in a private file of
    // this user), and wasmtime itself checks it was made by a compatible engine.
    unsafe { Component::deserialize(engine, payload) }.map_err(Rejected::Wasmtime)
}

/// A plugin that cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Its `.wasm` could not be read.
    #[error("cannot read the plugin: {0}")]
    Read(std::io::Error),
    /// It is not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0:#}")]
    Invalid(wasmtime::Error),
}
