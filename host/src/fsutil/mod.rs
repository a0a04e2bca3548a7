//! Private files and directories: the artifact cache, the token cache and plugin
//! state live in them, so they must be the user's alone and written atomically.
//!
//! What "private" means is the platform's ([`unix`]: modes 0700/0600 and the
//! owner's uid; [`windows`]: a protected ACL that grants the current user
//! alone); the rest of this module is the same everywhere.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use self::unix as sys;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use self::windows as sys;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use self::sys::{ContentStamp, is_private_file, leads_outside, open_beneath};
#[cfg(unix)]
pub use self::unix::current_uid;

/// What [`ensure_private_dir`] did to a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirState {
    /// It was created private.
    Created,
    /// It existed with safe permissions.
    Existed,
    /// It existed with permissions that let others in; they were narrowed to
    /// the user alone.
    Fixed {
        /// The permissions found, as the platform says them (`mode 0777`).
        before: String,
    },
}

/// A directory that cannot be made private.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    /// It belongs to another user: credbroker will not use it.
    #[error("`{path}` belongs to {owner}, not to the current user ({user}); refusing to use it")]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner (`uid 1000`, or a Windows SID).
        owner: String,
        /// The current user, in the same form.
        user: String,
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

/// How private an existing directory of the current user's is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirPrivacy {
    /// Only the user can enter it.
    Private,
    /// Others can enter it.
    Open {
        /// Its permissions, as the platform says them (`mode 0755`).
        before: String,
    },
}

/// How private the directory `path` is, without changing it: what `doctor`
/// reports and what [`ensure_private_dir`] starts from.
///
/// # Errors
///
/// [`PrivateDirError`] when it is missing (`Io` with `NotFound`), not a
/// directory, a symlink, or another user's.
pub fn dir_privacy(path: &Path) -> Result<DirPrivacy, PrivateDirError> {
    let meta = fs::symlink_metadata(path).map_err(|error| PrivateDirError::Io { path: path.to_path_buf(), error })?;
    if !meta.file_type().is_dir() {
        return Err(PrivateDirError::NotADirectory(path.to_path_buf()));
    }
    sys::dir_privacy(path, &meta)
}

/// Make sure `path` is a directory only the current user can enter: create it
/// (and missing parents) private, or narrow an existing one of the user's to
/// the user alone. A directory of another user, or a symlink, is refused.
///
/// # Errors
///
/// [`PrivateDirError`] when the directory cannot be created or made private.
pub fn ensure_private_dir(path: &Path) -> Result<DirState, PrivateDirError> {
    let io_err = |error| PrivateDirError::Io { path: path.to_path_buf(), error };
    let state = match dir_privacy(path) {
        Ok(DirPrivacy::Private) => DirState::Existed,
        Ok(DirPrivacy::Open { before }) => {
            sys::narrow_dir(path).map_err(io_err)?;
            DirState::Fixed { before }
        }
        Err(PrivateDirError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
            match sys::create_private_dir(path) {
                Ok(()) => DirState::Created,
                // Another process created it between our check and now.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return ensure_private_dir(path),
                Err(e) => return Err(io_err(e)),
            }
        }
        Err(e) => return Err(e),
    };
    if let DirState::Fixed { before } = &state {
        tracing::warn!("`{}` had {before}, which let other users in; {}", path.display(), sys::NARROWED);
    }
    Ok(state)
}

/// Open `path` without following a symlink at its end (one there is an
/// error): how cache entries, artifacts and lock files are opened, so a link
/// planted in a private directory cannot redirect a read or a write.
///
/// # Errors
///
/// The OS error; a symlink is an error on every platform.
pub fn open_nofollow(options: &mut fs::OpenOptions, path: &Path) -> io::Result<fs::File> {
    sys::open_nofollow(options, path)
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

/// A held lock: an exclusive lock on a private lock file (std's
/// [`fs::File::try_lock`]: `flock` on Unix, `LockFileEx` on Windows),
/// released when this is dropped (the file closes) or by the kernel when the
/// process dies, so a killed process never blocks the next one.
#[derive(Debug)]
pub struct FileLock {
    _file: fs::File,
}

/// A lock that could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file cannot be opened or locked.
    #[error("cannot lock `{}`: {error}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// Another process has held it longer than we wait.
    #[error("another credbroker has held `{}` for over {} s; is it waiting for input?", path.display(), waited.as_secs())]
    Timeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
}

impl FileLock {
    fn open(path: &Path) -> Result<fs::File, LockError> {
        let mut options = fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        sys::private_file_options(&mut options);
        open_nofollow(&mut options, path).map_err(|error| LockError::Io { path: path.to_path_buf(), error })
    }

    /// One attempt: the lock if it is free.
    fn try_lock(file: fs::File, path: &Path) -> Result<Result<Self, fs::File>, LockError> {
        match file.try_lock() {
            Ok(()) => Ok(Ok(Self { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(Err(file)),
            Err(fs::TryLockError::Error(error)) => Err(LockError::Io { path: path.to_path_buf(), error }),
        }
    }

    /// Take the lock on `path` (created 0600 if missing), waiting at most
    /// `timeout` for another process to let it go.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] or [`LockError::Io`].
    pub fn acquire(path: &Path, timeout: Duration) -> Result<Self, LockError> {
        let mut file = Self::open(path)?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            file = match Self::try_lock(file, path)? {
                Ok(lock) => return Ok(lock),
                Err(file) => file,
            };
            if started.elapsed() >= timeout {
                return Err(LockError::Timeout { path: path.to_path_buf(), waited: started.elapsed() });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// [`FileLock::acquire`] for async code: the wait sleeps on the async
    /// runtime's timer, so it costs no CPU and a deadline around it cancels it.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] or [`LockError::Io`].
    pub async fn acquire_async(path: &Path, timeout: Duration) -> Result<Self, LockError> {
        let mut file = Self::open(path)?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            file = match Self::try_lock(file, path)? {
                Ok(lock) => return Ok(lock),
                Err(file) => file,
            };
            if started.elapsed() >= timeout {
                return Err(LockError::Timeout { path: path.to_path_buf(), waited: started.elapsed() });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
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

/// Open `path` for reading as a regular file without blocking on it (a FIFO
/// opened for reading waits for a writer): the check every bounded read and
/// every grant read starts with.
///
/// # Errors
///
/// [`ReadError`] when it cannot be opened or is not a regular file.
pub fn open_regular(path: &Path) -> Result<(fs::File, fs::Metadata), ReadError> {
    let io_err = |error| ReadError::Io { path: path.to_path_buf(), error };
    let mut options = fs::OpenOptions::new();
    options.read(true);
    sys::nonblocking_read_options(&mut options);
    let file = options.open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if let Some(kind) = sys::not_regular(meta.file_type()) {
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
