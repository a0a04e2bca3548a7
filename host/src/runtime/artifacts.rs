//! Precompiled plugin artifacts, cached in the user cache directory.
//!
//! Compiling a plugin takes tens of milliseconds; loading a precompiled one
//! takes well under one. An artifact is filed under the sha256 of its `.wasm`
//! and the engine's compatibility fingerprint, so a changed plugin or a
//! different credbroker build never picks up a stale one. Each artifact has a
//! checksum beside it, checked before wasmtime maps the file: a truncated,
//! corrupted or tampered artifact is recompiled, never executed. The checksum
//! covers the plugin digest and engine fingerprint the artifact is filed
//! under as well as its whole content, so an artifact and checksum copied
//! under another plugin's name (or another engine's) do not match either: the
//! pin and signature checked against a `.wasm` always describe the code that
//! runs. (The checksum is xxh3-128, not a cryptographic hash: anyone who can
//! rewrite both files already runs code as this user, so a key would buy
//! nothing, and start-up time matters on every kubectl command.)

use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::fsutil;

/// Prefix of the checksum file's content.
const SUM_PREFIX: &str = "xxh3-128-bound:";
/// The prefix of checksums written before they covered the digest and
/// fingerprint: such an artifact is recompiled without a warning.
const UNBOUND_SUM_PREFIX: &str = "xxh3-128:";

/// The checksum of `artifact` as the compiled form of the plugin whose `.wasm`
/// has sha256 `digest`, for the engine with compatibility `fingerprint`.
fn checksum(digest: &str, fingerprint: &str, artifact: &[u8]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    // Lengths first, so no two (digest, fingerprint) pairs hash alike.
    for part in [digest.as_bytes(), fingerprint.as_bytes()] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.update(artifact);
    format!("{SUM_PREFIX}{:032x}", hasher.digest128())
}

/// Why a cached artifact was not used (it is then recompiled).
#[derive(Debug, thiserror::Error)]
enum Rejected {
    #[error("not found")]
    Missing,
    #[error("not a private regular file of the current user")]
    NotPrivate,
    #[error("checksum mismatch (truncated, corrupted, tampered with, or another plugin's)")]
    Checksum,
    #[error("its checksum is of an older format")]
    UnboundChecksum,
    #[error("its checksum file is missing or unreadable")]
    NoChecksum,
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
        Self { dir, fingerprint: super::engine::compatibility_fingerprint(engine) }
    }

    /// Where the artifact for `digest` lives.
    pub fn path_for(&self, digest: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{digest}-{}.cwasm", self.fingerprint)))
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
            match load(engine, path, digest, &self.fingerprint) {
                Ok(component) => return Ok(component),
                Err(Rejected::Missing) => {}
                Err(Rejected::UnboundChecksum) => {
                    tracing::debug!("recompiling `{}`: old checksum format", path.display())
                }
                Err(reason) => tracing::warn!("ignoring cached artifact `{}`: {reason}; recompiling", path.display()),
            }
        }
        let wasm = wasm().map_err(CompileError::Read)?;
        check_header(&wasm)?;
        // Before the compiler sees it: a small file must not cost minutes and gigabytes.
        crate::contract::check_bounds(&wasm).map_err(CompileError::TooComplex)?;
        let started = std::time::Instant::now();
        let artifact = engine.precompile_component(&wasm).map_err(CompileError::Invalid)?;
        tracing::debug!("compiled plugin {digest} ({} bytes) in {} ms", wasm.len(), started.elapsed().as_millis());
        if let (Some(path), Some(dir)) = (&path, &self.dir) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            // The artifact first, then its checksum: a reader in between sees a
            // mismatch and compiles for itself, which is merely slower.
            let written = fsutil::write_private_atomic(dir, name, &artifact).and_then(|()| {
                fsutil::write_private_atomic(
                    dir,
                    &sum_name(name),
                    checksum(digest, &self.fingerprint, &artifact).as_bytes(),
                )
            });
            if let Err(e) = written {
                tracing::warn!("cannot cache the compiled plugin in `{}`: {e}", dir.display());
            }
        }
        // SAFETY: `artifact` was produced by `precompile_component` of this very
        // engine a moment ago, in memory.
        unsafe { Component::deserialize(engine, &artifact) }.map_err(CompileError::Invalid)
    }
}

fn sum_name(artifact_name: &str) -> String {
    format!("{artifact_name}.sum")
}

fn load(engine: &Engine, path: &Path, digest: &str, fingerprint: &str) -> Result<Component, Rejected> {
    let file = match fsutil::open_nofollow(std::fs::OpenOptions::new().read(true), path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Rejected::Missing),
        Err(e) => return Err(Rejected::Io(e)),
    };
    let meta = file.metadata()?;
    if !fsutil::is_private_file(&meta) {
        return Err(Rejected::NotPrivate);
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let sum_path = path.with_file_name(sum_name(name));
    // A few dozen bytes: anything longer (or not a regular file) is not one.
    let expected = fsutil::read_text_bounded(&sum_path, 256).map_err(|_| Rejected::NoChecksum)?;
    if expected.starts_with(UNBOUND_SUM_PREFIX) {
        return Err(Rejected::UnboundChecksum);
    }
    // SAFETY: a read-only private mapping of a file only this user can write;
    // if it changed under us the checksum fails and the artifact is recompiled.
    let mapped = unsafe { memmap2::Mmap::map(&file) }?;
    if checksum(digest, fingerprint, &mapped) != expected.trim() {
        return Err(Rejected::Checksum);
    }
    // SAFETY (both): the file is a private file of this user whose content
    // matched the checksum written with it by `precompile_component`'s output,
    // and wasmtime itself checks it was made by a compatible engine. Nothing
    // else writes in the private cache directory.
    #[cfg(unix)]
    {
        drop(mapped);
        // The file's pages become the code's: nothing is copied.
        unsafe { Component::deserialize_file(engine, path) }.map_err(Rejected::Wasmtime)
    }
    // wasmtime maps the file for execution (PAGE_EXECUTE_WRITECOPY), which
    // needs the file opened for execution; wine refuses that for a file in the
    // cache, so the checked bytes are copied into fresh code memory instead.
    #[cfg(windows)]
    {
        unsafe { Component::deserialize(engine, &mapped[..]) }.map_err(Rejected::Wasmtime)
    }
}

/// Tell a non-wasm file and a core module apart from a component before
/// wasmtime's parser does, with advice instead of a byte dump.
fn check_header(wasm: &[u8]) -> Result<(), CompileError> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        return Err(CompileError::NotWasm);
    }
    if wasm[4..8] != COMPONENT {
        return Err(CompileError::CoreModule);
    }
    Ok(())
}

/// A plugin that cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Its `.wasm` could not be read.
    #[error("cannot read the plugin: {0}")]
    Read(std::io::Error),
    /// It is not WebAssembly at all.
    #[error("not a WebAssembly file")]
    NotWasm,
    /// It is a core module, not a component.
    #[error("a core WebAssembly module, not a component; build plugins with `cargo build --target wasm32-wasip2`")]
    CoreModule,
    /// It is over one of the size or complexity limits of a component.
    #[error("{0}")]
    TooComplex(crate::contract::TooComplex),
    /// It is not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0:#}")]
    Invalid(wasmtime::Error),
}
