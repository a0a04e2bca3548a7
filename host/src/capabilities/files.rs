//! `files`: read-only access to files the operator granted by path.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{GrantError, PluginContext};
use crate::runtime::bindings::files::Host;
use crate::runtime::bindings::types::HostError;

/// Identity of a file's content: modification time, size, inode.
type Stamp = (std::time::SystemTime, u64, u64);

/// File content by path, with the stamp it was read at.
type ContentCache = HashMap<PathBuf, (Stamp, Arc<Vec<u8>>)>;

/// The files one plugin may read.
#[derive(Debug, Default)]
pub struct FilePolicy {
    /// Exactly granted files.
    files: Vec<PathBuf>,
    /// Granted directories (written with a trailing `/`).
    dirs: Vec<PathBuf>,
    /// Content read before, kept until the file changes: a validator reads its
    /// grants on every review, and most reviews see the same file.
    cache: Mutex<ContentCache>,
}

fn is_normal_absolute(path: &Path) -> bool {
    path.is_absolute() && path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

impl FilePolicy {
    /// Check the operator's file grants.
    ///
    /// # Errors
    ///
    /// [`GrantError::BadFile`] for a relative path or one with `.`/`..`.
    pub fn new(grants: &[PathBuf]) -> Result<Self, GrantError> {
        let mut policy = Self::default();
        for grant in grants {
            if !is_normal_absolute(grant) {
                return Err(GrantError::BadFile(grant.clone()));
            }
            if grant.as_os_str().to_string_lossy().ends_with('/') {
                policy.dirs.push(grant.clone());
            } else {
                policy.files.push(grant.clone());
            }
        }
        Ok(policy)
    }

    /// Grants nothing.
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// Whether `path` may be read: it is granted exactly, or it lies below a
    /// granted directory even after symlinks are resolved.
    fn check(&self, path: &str) -> Result<PathBuf, HostError> {
        let requested = Path::new(path);
        if !is_normal_absolute(requested) {
            return Err(HostError::Invalid(format!("`{path}` must be an absolute path without `.` or `..`")));
        }
        if self.files.iter().any(|f| f == requested) {
            return Ok(requested.to_path_buf());
        }
        for dir in &self.dirs {
            if requested.starts_with(dir) {
                // A symlink inside the granted directory must not lead out of it.
                let real = requested
                    .canonicalize()
                    .map_err(|e| HostError::Unreachable(format!("cannot read `{path}`: {e}")))?;
                let real_dir = dir
                    .canonicalize()
                    .map_err(|e| HostError::Unreachable(format!("cannot read `{}`: {e}", dir.display())))?;
                if real.starts_with(&real_dir) {
                    return Ok(real);
                }
                return Err(HostError::Denied(format!(
                    "`{path}` leads outside the granted directory `{}`",
                    dir.display()
                )));
            }
        }
        Err(HostError::Denied(format!("`{path}` is not granted to this plugin (grants.files)")))
    }
}

impl FilePolicy {
    /// Read a checked path, from the content cache when the file is unchanged.
    fn read(&self, path: &str, real: &Path, limit: u64) -> Result<Arc<Vec<u8>>, HostError> {
        let unreadable = |e: std::io::Error| HostError::Unreachable(format!("cannot read `{path}`: {e}"));
        let stamp_of =
            |meta: &std::fs::Metadata| (meta.modified().unwrap_or(std::time::UNIX_EPOCH), meta.len(), meta.ino());
        // Most reads find the file as it was the last time (a validator reads
        // its grants on every review): one stat answers them, without opening
        // the file. A file that does not stat is opened below for the error.
        if let Ok(meta) = std::fs::metadata(real) {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((cached, bytes)) = cache.get(real)
                && *cached == stamp_of(&meta)
            {
                return Ok(Arc::clone(bytes));
            }
        }
        let file = std::fs::File::open(real).map_err(unreadable)?;
        let stamp = stamp_of(&file.metadata().map_err(unreadable)?);
        let mut bytes = Vec::new();
        file.take(limit + 1).read_to_end(&mut bytes).map_err(unreadable)?;
        if bytes.len() as u64 > limit {
            return Err(HostError::Invalid(format!("`{path}` is larger than the per-call limit of {limit} bytes")));
        }
        let bytes = Arc::new(bytes);
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(real.to_path_buf(), (stamp, Arc::clone(&bytes)));
        Ok(bytes)
    }
}

impl Host for PluginContext {
    async fn read(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, HostError>> {
        let policy = &self.policy.files;
        let result = policy
            .check(&path)
            .and_then(|real| policy.read(&path, &real, self.limits.max_call_bytes))
            .map(|bytes| bytes.as_ref().clone());
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_paths_pass() {
        let dir = tempfile::tempdir().unwrap();
        let granted = dir.path().join("tokens.csv");
        std::fs::write(&granted, "x").unwrap();
        let sub = dir.path().join("keys/");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("a.pem"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", sub.join("escape")).unwrap();
        let policy = FilePolicy::new(&[granted.clone(), PathBuf::from(format!("{}/", sub.display()))]).unwrap();

        assert!(policy.check(granted.to_str().unwrap()).is_ok());
        assert!(policy.check(sub.join("a.pem").to_str().unwrap()).is_ok());
        assert!(matches!(policy.check("/etc/passwd"), Err(HostError::Denied(_))));
        assert!(matches!(policy.check(sub.join("escape").to_str().unwrap()), Err(HostError::Denied(_))));
        let dotdot = format!("{}/../tokens.csv", sub.display());
        assert!(matches!(policy.check(&dotdot), Err(HostError::Invalid(_))));
        assert!(matches!(policy.check("relative"), Err(HostError::Invalid(_))));
        assert!(FilePolicy::new(&[PathBuf::from("etc/x")]).is_err());
    }
}
