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

/// A file the host reads on a plugin's or the operator's behalf that cannot
/// be used.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading it failed.
    #[error("cannot read `{}`: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// It is a FIFO, a device, a socket or a directory: reading it could
    /// block forever or never end.
    #[error("`{}` is a {kind}, not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// It is larger than the bound for its kind.
    #[error("`{}` is {size} bytes, over the limit of {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least).
        size: u64,
        /// The limit.
        limit: u64,
    },
}

impl ReadError {
    /// What is wrong, without the path (for messages that name the file themselves).
    pub fn reason(&self) -> String {
        match self {
            Self::Io { error, .. } => error.to_string(),
            Self::NotAFile { kind, .. } => format!("it is a {kind}, not a regular file"),
            Self::TooLarge { size, limit, .. } => format!("it is {size} bytes, over the limit of {limit} bytes"),
        }
    }

    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { error, .. } if error.kind() == io::ErrorKind::NotFound)
    }
}

/// What kind of thing `file_type` is, when it is not a regular file.
fn not_regular(file_type: fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("directory")
    } else if file_type.is_fifo() {
        Some("FIFO")
    } else if file_type.is_char_device() {
        Some("character device")
    } else if file_type.is_block_device() {
        Some("block device")
    } else if file_type.is_socket() {
        Some("socket")
    } else {
        Some("special file")
    }
}

/// Open `path` for reading as a regular file without blocking on it (a FIFO
/// opened for reading waits for a writer): the check every bounded read and
/// every grant read starts with.
///
/// # Errors
///
/// [`ReadError`] when it cannot be opened or is not a regular file.
pub fn open_regular(path: &Path) -> Result<(fs::File, fs::Metadata), ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_err = |error| ReadError::Io { path: path.to_path_buf(), error };
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if let Some(kind) = not_regular(meta.file_type()) {
        return Err(ReadError::NotAFile { path: path.to_path_buf(), kind });
    }
    Ok((file, meta))
}

/// Read the regular file `path`, refusing one over `limit` bytes.
///
/// # Errors
///
/// [`ReadError`] saying why, with the size and the limit for a file too large.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let (file, meta) = open_regular(path)?;
    if meta.len() > limit {
        return Err(ReadError::TooLarge { path: path.to_path_buf(), size: meta.len(), limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow between the stat and the read.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|error| ReadError::Io { path: path.to_path_buf(), error })?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { path: path.to_path_buf(), size: bytes.len() as u64, limit });
    }
    Ok(bytes)
}

/// [`read_bounded`], as UTF-8 text.
///
/// # Errors
///
/// As for [`read_bounded`]; text that is not UTF-8 is an [`io::ErrorKind::InvalidData`] error.
pub fn read_text_bounded(path: &Path, limit: u64) -> Result<String, ReadError> {
    let bytes = read_bounded(path, limit)?;
    String::from_utf8(bytes).map_err(|_| ReadError::Io {
        path: path.to_path_buf(),
        error: io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"),
    })
}

/// Open the file at `relative` (normal components only) beneath the directory
/// `dir` in one step, without following anything out of it: on Linux with
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` (symlinks that stay
/// inside `dir` are followed, like a Kubernetes Secret volume's), elsewhere
/// (or on kernels before 5.6) by walking the components with `O_NOFOLLOW`,
/// which refuses every symlink. Renaming entries inside `dir` while this runs
/// cannot make it open something outside.
///
/// # Errors
///
/// The OS error; `ELOOP`/`EXDEV` for a path that would leave `dir`.
pub fn open_beneath(dir: &Path, relative: &Path) -> io::Result<fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    if !relative.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "only plain path components below the directory"));
    }
    let root = fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC).open(dir)?;
    let c_path = |p: &std::ffi::OsStr| {
        std::ffi::CString::new(p.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
    };
    #[cfg(target_os = "linux")]
    {
        let path = c_path(relative.as_os_str())?;
        // SAFETY: open_how is a plain C struct; all-zero is its empty value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: openat2 with a valid directory fd, a NUL-terminated path and
        // an open_how of the size passed; the returned fd is owned below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh fd this process owns.
            return Ok(unsafe { fs::File::from_raw_fd(fd as i32) });
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ENOSYS) {
            return Err(error);
        }
    }
    // Walk: every directory component with O_NOFOLLOW | O_DIRECTORY, the
    // file with O_NOFOLLOW, each relative to the one before.
    let mut current = root;
    let mut components = relative.components().peekable();
    while let Some(component) = components.next() {
        let name = c_path(component.as_os_str())?;
        let last = components.peek().is_none();
        let flags = libc::O_NOFOLLOW
            | libc::O_CLOEXEC
            | if last {
                libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY
            } else {
                libc::O_DIRECTORY | libc::O_RDONLY
            };
        // SAFETY: openat with a valid directory fd and a NUL-terminated name.
        let fd = unsafe { libc::openat(current.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd this process owns.
        current = unsafe { fs::File::from_raw_fd(fd) };
    }
    Ok(current)
}

/// Bounds of the files the host reads, by kind.
pub mod bounds {
    /// A configuration file (`config.toml`, `serve.toml`).
    pub const CONFIG: u64 = 4 * 1024 * 1024;
    /// A plugin component.
    pub const PLUGIN: u64 = 256 * 1024 * 1024;
    /// A `file:` setting, a key, a certificate or a CA bundle.
    pub const SMALL: u64 = 4 * 1024 * 1024;
    /// A kubeconfig.
    pub const KUBECONFIG: u64 = 16 * 1024 * 1024;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_reads_refuse_what_would_hang_or_never_end() {
        let root = tempfile::tempdir().unwrap();
        let fifo = root.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let error = read_bounded(&fifo, 10).unwrap_err().to_string();
        assert!(error.ends_with("is a FIFO, not a regular file"), "{error}");
        let error = read_bounded(Path::new("/dev/zero"), 10).unwrap_err().to_string();
        assert_eq!(error, "`/dev/zero` is a character device, not a regular file");
        assert!(read_bounded(root.path(), 10).unwrap_err().to_string().contains("is a directory"));
        let big = root.path().join("big");
        fs::write(&big, vec![b'x'; 11]).unwrap();
        let error = read_bounded(&big, 10).unwrap_err().to_string();
        assert!(error.ends_with("is 11 bytes, over the limit of 10 bytes"), "{error}");
        assert_eq!(read_bounded(&big, 11).unwrap().len(), 11);
        assert!(read_bounded(&root.path().join("missing"), 10).unwrap_err().is_not_found());
    }

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
