//! Private on Unix: directories 0700 and files 0600, owned by the current
//! user; reads that cannot block on a FIFO; opens that never leave a
//! directory (`openat2` on Linux, an `O_NOFOLLOW` walk elsewhere).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{DirPrivacy, PrivateDirError};

/// The current user's uid.
pub fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Whether an existing directory is the user's and others cannot enter it.
pub(super) fn dir_privacy(path: &Path, meta: &fs::Metadata) -> Result<DirPrivacy, PrivateDirError> {
    let uid = current_uid();
    if meta.uid() != uid {
        return Err(PrivateDirError::ForeignOwner {
            path: path.to_path_buf(),
            owner: format!("uid {}", meta.uid()),
            user: format!("uid {uid}"),
        });
    }
    let mode = meta.mode() & 0o7777;
    Ok(if mode & 0o077 == 0 { DirPrivacy::Private } else { DirPrivacy::Open { before: format!("mode {mode:04o}") } })
}

/// What [`narrow_dir`] did, for the warning.
pub(super) const NARROWED: &str = "changed it to 0700";

/// Narrow a directory of the user's to 0700.
pub(super) fn narrow_dir(path: &Path) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

/// Create `path` with mode 0700; missing parents are created 0700 too, as the
/// XDG spec asks.
pub(super) fn create_private_dir(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    }
    fs::DirBuilder::new().mode(0o700).create(path)
}

/// Whether `meta` describes a regular file of the current user that nobody else
/// can write: the precondition for trusting a cache file's content.
pub fn is_private_file(meta: &fs::Metadata) -> bool {
    meta.file_type().is_file() && meta.uid() == current_uid() && meta.mode() & 0o022 == 0
}

/// Files created with `options` get mode 0600.
pub(super) fn private_file_options(options: &mut fs::OpenOptions) {
    options.mode(0o600);
}

pub(super) fn open_nofollow(options: &mut fs::OpenOptions, path: &Path) -> io::Result<fs::File> {
    options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)
}

/// Opening a FIFO for reading must not wait for a writer.
pub(super) fn nonblocking_read_options(options: &mut fs::OpenOptions) {
    options.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC);
}

/// What kind of thing `file_type` is, when it is not a regular file.
pub(super) fn not_regular(file_type: fs::FileType) -> Option<&'static str> {
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

/// Identity of a file's content for caches and reload checks: it changes
/// when the file is rewritten or replaced (device, inode, size, mtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentStamp(u64, u64, u64, i64, i64);

impl ContentStamp {
    /// The stamp of `meta`.
    pub fn of(meta: &fs::Metadata) -> Self {
        Self(meta.dev(), meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec())
    }
}

/// Whether `error`, from [`open_beneath`], says the path would leave the directory.
pub fn leads_outside(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ELOOP | libc::EXDEV))
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    use super::super::*;

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
        assert_eq!(ensure_private_dir(&dir).unwrap(), DirState::Fixed { before: "mode 0777".into() });
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
