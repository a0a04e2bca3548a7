//! `files`: read-only access to files the operator granted by path.
//!
//! A grant names a file exactly, or a directory (written with a trailing
//! `/`) whose files may all be read. A file below a granted directory is
//! opened beneath it in one step ([`fsutil::open_beneath`]), so whoever can
//! rename entries inside the directory cannot make a read land outside it.
//! Only regular files are read (a FIFO or a device would hang or never end),
//! at most `max-call-bytes` of them, off the async workers.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf, Prefix};
use std::sync::{Arc, Mutex};

use wasmtime::component::Linker;

use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::bindings::files::{Host, add_to_linker};
use crate::bindings::types::HostError;
use crate::boundary::wire::WireSize;
use crate::boundary::{CapView, ViewOf};
use crate::fsutil;

/// Most files whose content is kept between reads.
const CACHED_FILES: usize = 64;

/// Most bytes of content kept between reads, per plugin. The cache belongs
/// to the plugin, not to one run, so no run's memory account can carry it;
/// this bound keeps it small whatever `max-call-bytes` allows (a file over
/// it is read again on every call instead).
const CACHED_BYTES: usize = 32 << 20;

/// The `files` capability.
pub struct Files;

impl Capability for Files {
    const INTERFACE: &'static str = "files";
    const WHAT: &'static str = "read files";
    const GRANT: &'static str = "grants.files: allowed paths";
    type Policy = FilePolicy;
    type State = FileReads;

    fn configure(grants: &mut GrantTable, _: &PluginSetup) -> Result<FilePolicy, GrantError> {
        let files: Vec<PathBuf> = grants.take("files")?;
        FilePolicy::new(&files)
    }

    fn prepare(policy: &Arc<FilePolicy>) -> FileReads {
        FileReads { policy: Arc::clone(policy) }
    }

    fn link(
        linker: &mut Linker<HostState>,
        view: fn(&mut HostState) -> CapView<'_, Self::State>,
    ) -> wasmtime::Result<()> {
        add_to_linker::<HostState, ViewOf<Self::State>>(linker, view)
    }
}

/// The files one plugin may read.
#[derive(Debug, Default)]
pub struct FilePolicy {
    /// Exactly granted files.
    files: Vec<PathBuf>,
    /// Granted directories (written with a trailing `/`).
    dirs: Vec<PathBuf>,
    /// Content read before, by the identity of the file it came from (device
    /// and inode, not the path), kept while the file is unchanged: a
    /// validator may read its grants on every review.
    cache: Mutex<HashMap<fsutil::ContentStamp, Arc<Vec<u8>>>>,
}

fn is_normal_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path.components().all(|c| match c {
            Component::RootDir | Component::Normal(_) => true,
            // Windows: a drive (`C:`) or a share (`\\server\share`), also in
            // their `\\?\` forms; never a device (`\\.\pipe\...`).
            Component::Prefix(prefix) => matches!(
                prefix.kind(),
                Prefix::Disk(_) | Prefix::VerbatimDisk(_) | Prefix::UNC(..) | Prefix::VerbatimUNC(..)
            ),
            Component::CurDir | Component::ParentDir => false,
        })
}

/// Where a checked path is opened from.
#[derive(Debug, PartialEq, Eq)]
enum Granted {
    /// A file granted by its exact path.
    Exact(PathBuf),
    /// A file below a granted directory: the directory and the rest.
    Beneath(PathBuf, PathBuf),
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
            // A trailing separator (`/`, or `\` on Windows) grants a directory.
            if grant.as_os_str().to_string_lossy().ends_with(std::path::is_separator) {
                policy.dirs.push(grant.clone());
            } else {
                policy.files.push(grant.clone());
            }
        }
        Ok(policy)
    }

    /// The granted files and directories.
    pub fn granted(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().chain(&self.dirs).map(PathBuf::as_path)
    }

    /// Whether `path` may be read, and from where.
    fn check(&self, path: &str) -> Result<Granted, HostError> {
        let requested = Path::new(path);
        if !is_normal_absolute(requested) {
            return Err(HostError::Invalid(format!("`{path}` must be an absolute path without `.` or `..`")));
        }
        if self.files.iter().any(|f| f == requested) {
            return Ok(Granted::Exact(requested.to_path_buf()));
        }
        for dir in &self.dirs {
            if let Ok(rest) = requested.strip_prefix(dir)
                && rest.components().next().is_some()
            {
                return Ok(Granted::Beneath(dir.clone(), rest.to_path_buf()));
            }
        }
        Err(HostError::Denied(format!("`{path}` is not granted to this plugin (grants.files)")))
    }

    /// Read a checked file: opened once, answered from the cache when the
    /// file opened is the one read before and unchanged.
    fn read(&self, path: &str, granted: &Granted, limit: u64) -> Result<Arc<Vec<u8>>, HostError> {
        let unreadable = |e: std::io::Error| HostError::Unreachable(format!("cannot read `{path}`: {e}"));
        let file = match granted {
            Granted::Exact(file) => fsutil::open_regular(file).map(|(file, _)| file).map_err(|e| match e {
                fsutil::ReadError::NotAFile { kind, .. } => {
                    HostError::Invalid(format!("`{path}` is a {kind}, not a regular file"))
                }
                other => HostError::Unreachable(other.to_string()),
            })?,
            Granted::Beneath(dir, rest) => fsutil::open_beneath(dir, rest).map_err(|e| {
                if fsutil::leads_outside(&e) {
                    HostError::Denied(format!("`{path}` leads outside the granted directory `{}`", dir.display()))
                } else {
                    unreadable(e)
                }
            })?,
        };
        let meta = file.metadata().map_err(unreadable)?;
        if !meta.file_type().is_file() {
            return Err(HostError::Invalid(format!("`{path}` is not a regular file")));
        }
        if meta.len() > limit {
            return Err(HostError::Invalid(format!(
                "`{path}` is {} bytes, over the per-call limit (max-call-bytes) of {limit} bytes",
                meta.len()
            )));
        }
        let stamp = fsutil::ContentStamp::of(&meta);
        if let Some(bytes) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&stamp) {
            return Ok(Arc::clone(bytes));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.take(limit + 1).read_to_end(&mut bytes).map_err(unreadable)?;
        if bytes.len() as u64 > limit {
            return Err(HostError::Invalid(format!(
                "`{path}` is larger than the per-call limit (max-call-bytes) of {limit} bytes"
            )));
        }
        let bytes = Arc::new(bytes);
        if bytes.len() <= CACHED_BYTES {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let held: usize = cache.values().map(|b| b.len()).sum();
            if cache.len() >= CACHED_FILES || held + bytes.len() > CACHED_BYTES {
                cache.clear();
            }
            cache.insert(stamp, Arc::clone(&bytes));
        }
        Ok(bytes)
    }
}

/// A run's file reads.
pub struct FileReads {
    policy: Arc<FilePolicy>,
}

impl Host for CapView<'_, FileReads> {
    async fn read(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, HostError>> {
        self.call("files.read", path.wire_size(), async |files, boundary| {
            let policy = Arc::clone(&files.policy);
            let limit = boundary.limits().max_call_bytes;
            // Disks and network file systems can be slow: off the async workers.
            let read = tokio::task::spawn_blocking(move || {
                let granted = policy.check(&path)?;
                policy.read(&path, &granted, limit).map(|bytes| bytes.as_ref().clone())
            })
            .await;
            Ok(read.unwrap_or_else(|e| Err(HostError::Unreachable(format!("the read failed: {e}")))))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use crate::capabilities::testing::Run;

    #[test]
    fn only_granted_paths_pass() {
        let dir = tempfile::tempdir().unwrap();
        let granted = dir.path().join("tokens.csv");
        let sub = dir.path().join("keys/");
        let policy = FilePolicy::new(&[granted.clone(), PathBuf::from(format!("{}/", sub.display()))]).unwrap();
        assert_eq!(policy.check(granted.to_str().unwrap()).unwrap(), Granted::Exact(granted.clone()));
        assert!(matches!(policy.check(sub.join("a.pem").to_str().unwrap()), Ok(Granted::Beneath(_, _))));
        let other = dir.path().join("other.txt");
        assert!(matches!(policy.check(other.to_str().unwrap()), Err(HostError::Denied(_))));
        // Not a file path (on Windows a named pipe's): never granted.
        assert!(matches!(policy.check(r"\\.\pipe\x"), Err(HostError::Invalid(_))));
        assert!(FilePolicy::new(&[PathBuf::from(r"\\.\pipe\x")]).is_err());
        assert!(matches!(policy.check(sub.to_str().unwrap()), Err(HostError::Denied(_))), "the directory itself");
        let dotdot = format!("{}/../tokens.csv", sub.display());
        assert!(matches!(policy.check(&dotdot), Err(HostError::Invalid(_))));
        assert!(matches!(policy.check("relative"), Err(HostError::Invalid(_))));
        assert!(FilePolicy::new(&[PathBuf::from("etc/x")]).is_err());
    }

    #[test]
    fn the_content_cache_is_bounded_in_bytes_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let policy = FilePolicy::new(&[PathBuf::from(format!("{}/", dir.path().display()))]).unwrap();
        let held = |policy: &FilePolicy| {
            let cache = policy.cache.lock().unwrap();
            (cache.len(), cache.values().map(|b| b.len()).sum::<usize>())
        };
        let read = |name: &str, size: usize| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![b'x'; size]).unwrap();
            let path = path.display().to_string();
            let granted = policy.check(&path).unwrap();
            policy.read(&path, &granted, 1 << 30).unwrap().len()
        };
        // A file over the byte bound is served, not kept.
        assert_eq!(read("huge", CACHED_BYTES + 1), CACHED_BYTES + 1);
        assert_eq!(held(&policy), (0, 0));
        // Files that together pass the bound never make the cache hold more.
        for i in 0..6 {
            read(&format!("big-{i}"), CACHED_BYTES / 4);
            assert!(held(&policy).1 <= CACHED_BYTES, "{:?}", held(&policy));
        }
        for i in 0..(CACHED_FILES + 10) {
            read(&format!("small-{i}"), 10);
            assert!(held(&policy).0 <= CACHED_FILES);
        }
    }

    #[cfg(unix)]
    fn grants(paths: &[&Path]) -> String {
        format!(
            "files = [{}]",
            paths.iter().map(|p| format!("{:?}", p.display().to_string())).collect::<Vec<_>>().join(",")
        )
    }

    // Symlinks and FIFOs made as Unix makes them; on Windows the e2e suite checks the open.
    #[cfg(unix)]
    #[tokio::test]
    async fn symlinks_and_fifos_do_not_lead_out() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keys");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.pem"), "inside").unwrap();
        std::fs::write(root.path().join("secret"), "outside").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret"), dir.join("escape")).unwrap();
        std::os::unix::fs::symlink("a.pem", dir.join("alias")).unwrap();
        let fifo = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let granted = format!("{}/", dir.display());
        let mut run = Run::builder().grants(&grants(&[Path::new(&granted)])).build();
        let mut view = run.view::<Files>();
        let read = |name: &str| dir.join(name).display().to_string();
        assert_eq!(view.read(read("a.pem")).await.unwrap().unwrap(), b"inside");
        assert_eq!(view.read(read("alias")).await.unwrap().unwrap(), b"inside", "a symlink that stays inside");
        let escape = view.read(read("escape")).await.unwrap().unwrap_err();
        assert!(matches!(&escape, HostError::Denied(m) if m.contains("leads outside")), "{escape:?}");
        let started = std::time::Instant::now();
        let fifo = view.read(read("fifo")).await.unwrap().unwrap_err();
        assert!(matches!(&fifo, HostError::Invalid(m) if m.contains("not a regular file")), "{fifo:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    // Swaps the directory for a symlink, which Windows lets only administrators make.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_directory_swapped_during_reads_never_yields_an_outside_file() {
        let root = tempfile::tempdir().unwrap();
        let granted = root.path().join("granted");
        let inner = granted.join("sub");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(inner.join("token"), "inside").unwrap();
        std::fs::write(outside.join("token"), "OUTSIDE").unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // An attacker who can rename entries in the granted directory keeps
        // swapping `sub` for a symlink to the outside directory.
        let swapper = {
            let (stop, granted, outside) = (Arc::clone(&stop), granted.clone(), outside.clone());
            std::thread::spawn(move || {
                let (sub, parked, link) = (granted.join("sub"), granted.join("parked"), granted.join("link"));
                let _ = std::os::unix::fs::symlink(&outside, &link);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::fs::rename(&sub, &parked);
                    let _ = std::fs::rename(&link, &sub);
                    let _ = std::fs::rename(&sub, &link);
                    let _ = std::fs::rename(&parked, &sub);
                }
            })
        };
        let dir = format!("{}/", granted.display());
        let mut run = Run::builder().grants(&grants(&[Path::new(&dir)])).build();
        let mut view = run.view::<Files>();
        let path = inner.join("token").display().to_string();
        let mut inside = 0;
        for _ in 0..3000 {
            if let Ok(bytes) = view.read(path.clone()).await.unwrap() {
                assert_eq!(bytes, b"inside", "a read landed outside the grant");
                inside += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        assert!(inside > 0, "some reads found the file in place");
    }
}
