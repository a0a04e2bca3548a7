//! Private files and directories: the artifact cache, the token cache and plugin
//! state live in them, so they must be the user's alone and written atomically.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What [`ensure_private_dir`] did to a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// It was created (mode 0700).
    Created,
    /// It existed with safe permissions.
    Existed,
    /// It existed with permissions that let others in; they were narrowed to 0700.
    Fixed {
        /// The mode found.
        old_mode: u32,
    },
}

/// A directory that cannot be made private.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    /// It belongs to another user: credbroker will not use it.
    #[error("`{path}` belongs to uid {owner}, not to the current user (uid {uid}); refusing to use it")]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The current user.
        uid: u32,
    },
    /// It is a symlink or not a directory.
    #[error("`{0}` is not a directory (or is a symlink); refusing to use it")]
    NotADirectory(PathBuf),
    /// Creating or inspecting it failed.
    #[error("cannot create `{path}`: {error}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
}

/// The current user's uid.
pub fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Make sure `path` is a directory only the current user can enter: create it
/// (and missing parents) with mode 0700, or narrow an existing one to 0700 if
/// it is the user's. A directory of another user, or a symlink, is refused.
///
/// # Errors
///
/// [`PrivateDirError`] when the directory cannot be created or made private.
pub fn ensure_private_dir(path: &Path) -> Result<DirState, PrivateDirError> {
    let io_err = |error| PrivateDirError::Io { path: path.to_path_buf(), error };
    let state = match fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.file_type().is_dir() {
                return Err(PrivateDirError::NotADirectory(path.to_path_buf()));
            }
            let uid = current_uid();
            if meta.uid() != uid {
                return Err(PrivateDirError::ForeignOwner { path: path.to_path_buf(), owner: meta.uid(), uid });
            }
            let mode = meta.mode() & 0o7777;
            if mode & 0o077 != 0 {
                fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_err)?;
                DirState::Fixed { old_mode: mode }
            } else {
                DirState::Existed
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Missing parents are created 0700 too, as the XDG spec asks.
            if let Some(parent) = path.parent() {
                fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(io_err)?;
            }
            match fs::DirBuilder::new().mode(0o700).create(path) {
                Ok(()) => DirState::Created,
                // Another process created it between our check and now.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return ensure_private_dir(path);
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        Err(e) => return Err(io_err(e)),
    };
    if let DirState::Fixed { old_mode } = state {
        tracing::warn!("`{}` had mode {old_mode:04o}, which let other users in; changed it to 0700", path.display());
    }
    Ok(state)
}

/// Whether `meta` describes a regular file of the current user that nobody else
/// can write: the precondition for trusting a cache file's content.
pub fn is_private_file(meta: &fs::Metadata) -> bool {
    meta.file_type().is_file() && meta.uid() == current_uid() && meta.mode() & 0o022 == 0
}

/// Write `bytes` to `dir/name` atomically with mode 0600: readers see the old
/// content or the new, never a mix, even when several processes write at once.
///
/// # Errors
///
/// I/O errors creating, writing or renaming the temporary file.
pub fn write_private_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    // tempfile creates the file with mode 0600 and a random name in `dir`.
    let mut file = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_data()?;
    file.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_are_created_and_fixed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        assert_eq!(ensure_private_dir(&dir).unwrap(), DirState::Created);
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(ensure_private_dir(&dir).unwrap(), DirState::Existed);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(ensure_private_dir(&dir).unwrap(), DirState::Fixed { old_mode: 0o777 });
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn symlinks_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        assert!(matches!(ensure_private_dir(&link), Err(PrivateDirError::NotADirectory(_))));
    }

    #[test]
    fn atomic_writes_are_private() {
        let root = tempfile::tempdir().unwrap();
        write_private_atomic(root.path(), "x", b"one").unwrap();
        write_private_atomic(root.path(), "x", b"two").unwrap();
        let meta = fs::metadata(root.path().join("x")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(is_private_file(&meta));
        assert_eq!(fs::read(root.path().join("x")).unwrap(), b"two");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
