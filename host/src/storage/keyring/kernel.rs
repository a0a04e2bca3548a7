//! The kernel's key retention service (keyrings(7)) as a front cache for the
//! credentials credbroker keeps in the Secret Service.
//!
//! A cache hit from the Secret Service is three round trips through
//! dbus-daemon to gnome-keyring-daemon (see `secret_service.rs` for why no
//! fewer), about twice the time of a hit from a file. A `user` key in the
//! user keyring (`@u`) is found and read in three system calls. So every
//! cached credential stored in the Secret Service is also added to `@u`:
//!
//! - with a timeout of the credential's remaining lifetime: the kernel drops
//!   it when the credential expires;
//! - readable, writable and searchable by its owner only (possessor and user
//!   bits; nothing for group or others): the processes of the same uid, the
//!   ones that may ask the Secret Service for it too;
//! - in memory only, never swapped to a file by the kernel, gone at reboot;
//! - under a description that names no secret: `credbroker:` and hashes of
//!   the cache directory, the profile and the item (see [`KernelCache`]).
//!
//! Plugin state (refresh tokens) is never kept here: it lives as long as the
//! login, and only the Secret Service guards it with its lock.
//!
//! The kernel may refuse: no keyring support, `keyctl` blocked by seccomp
//! (most container runtimes), a full quota (a non-root user may hold 20,000
//! bytes by default, `/proc/sys/kernel/keys/maxbytes`), an entry larger than
//! a `user` key holds. Every refusal only means no front cache: the caller
//! reads the Secret Service as it would have.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use linux_keyutils::{Key, KeyError, KeyPermissionsBuilder, KeyRing, KeyRingIdentifier, KeySerialId, Permission};
use sha2::{Digest, Sha256};

use super::ItemId;

/// The largest payload a `user` key holds (the kernel's limit).
pub const MAX_PAYLOAD: usize = 32_767;

/// What every description of credbroker's keys starts with.
pub const PREFIX: &str = "credbroker:";

/// The kernel refused a call; the caller goes on without the front cache.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The entry is larger than a `user` key may hold.
    #[error("{0} bytes are more than a kernel `user` key holds ({MAX_PAYLOAD})")]
    TooLarge(usize),
    /// A system call failed: no keyring support, blocked by seccomp, a full
    /// quota, or a key this user may not touch.
    #[error("the kernel keyring refused {call}: {reason}")]
    Refused {
        /// What was asked.
        call: &'static str,
        /// The kernel's answer, as linux-keyutils names it.
        reason: KeyError,
    },
}

fn refused(call: &'static str) -> impl FnOnce(KeyError) -> KernelError {
    move |reason| KernelError::Refused { call, reason }
}

/// The kernel keys of one credential cache (a cache directory): every
/// description is `credbroker:SCOPE:PROFILE:ITEM`, where SCOPE hashes the
/// directory (two homes, or two test environments, of one uid never share a
/// key), PROFILE the profile (so `cache clear --provider` finds its keys
/// without knowing their names) and ITEM everything that names the item.
#[derive(Debug, Clone)]
pub struct KernelCache {
    scope: String,
}

/// SHA-256 over `parts`, each length-prefixed (no two lists hash alike), in
/// hex, its first `bytes` bytes.
fn tag(parts: &[&[u8]], bytes: usize) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hex::encode(&hash.finalize()[..bytes])
}

/// Owner only: view, read, search, write (an update) and setattr (the
/// timeout) for the possessor and the user, nothing for group and others.
/// Not `link`: nobody needs the key in another keyring.
fn owner_only() -> linux_keyutils::KeyPermissions {
    let owner = || Permission::VIEW | Permission::READ | Permission::SEARCH | Permission::WRITE | Permission::SETATTR;
    KeyPermissionsBuilder::builder().posessor(owner()).user(owner()).build()
}

/// The user keyring; with `create`, made if this uid has none yet.
fn user_keyring(create: bool) -> Result<Option<KeyRing>, KernelError> {
    match KeyRing::from_special_id(KeyRingIdentifier::User, create) {
        Ok(ring) => Ok(Some(ring)),
        Err(KeyError::KeyDoesNotExist | KeyError::KeyringDoesNotExist) if !create => Ok(None),
        Err(e) => Err(refused("finding the user keyring")(e)),
    }
}

/// Remove `key` now: invalidated (gone from every keyring at once), or at
/// least unlinked from `ring` when invalidating is not allowed (a key whose
/// permissions could not be set).
fn discard(ring: &KeyRing, key: Key) -> Result<(), KeyError> {
    key.invalidate().or_else(|e| ring.unlink_key(key).map_err(|_| e))
}

impl KernelCache {
    /// The kernel keys of the cache in `scope` (its directory).
    pub fn new(scope: &Path) -> Self {
        Self { scope: tag(&[b"credential cache", scope.as_os_str().as_bytes()], 8) }
    }

    /// What the descriptions of the keys of `profile` (or of every profile)
    /// start with.
    fn prefix(&self, profile: Option<&str>) -> String {
        match profile {
            Some(profile) => {
                format!("{PREFIX}{}:{}:", self.scope, tag(&[self.scope.as_bytes(), profile.as_bytes()], 8))
            }
            None => format!("{PREFIX}{}:", self.scope),
        }
    }

    /// The description of `item`'s key: hashes only, no secret and no name.
    pub fn description(&self, item: &ItemId) -> String {
        let parts: [&[u8]; 4] =
            [self.scope.as_bytes(), item.kind.as_bytes(), item.profile.as_bytes(), item.key.as_bytes()];
        format!("{}{}", self.prefix(Some(&item.profile)), tag(&parts, 16))
    }

    /// `item`'s key in the user keyring, if there is one.
    fn find(&self, item: &ItemId) -> Result<Option<(KeyRing, Key)>, KernelError> {
        let Some(ring) = user_keyring(false)? else { return Ok(None) };
        match ring.search(&self.description(item)) {
            Ok(key) => Ok(Some((ring, key))),
            Err(KeyError::KeyDoesNotExist | KeyError::KeyExpired | KeyError::KeyRevoked) => Ok(None),
            Err(e) => Err(refused("a search")(e)),
        }
    }

    /// The payload kept for `item`, if there is one.
    ///
    /// # Errors
    ///
    /// [`KernelError::Refused`] when the kernel refuses the search or the read.
    pub fn get(&self, item: &ItemId) -> Result<Option<Vec<u8>>, KernelError> {
        let Some((_, key)) = self.find(item)? else { return Ok(None) };
        let mut payload = vec![0; MAX_PAYLOAD];
        match key.read(&mut payload) {
            // The kernel says how much there is even when it copied nothing
            // (a larger payload than the buffer): not one of ours.
            Ok(len) if len <= payload.len() => {
                payload.truncate(len);
                Ok(Some(payload))
            }
            Ok(_) => Ok(None),
            Err(KeyError::KeyExpired | KeyError::KeyRevoked) => Ok(None),
            Err(e) => Err(refused("reading a key")(e)),
        }
    }

    /// Keep `payload` as `item` for `lifetime` (whole seconds; less than one
    /// keeps nothing), replacing what was kept.
    ///
    /// # Errors
    ///
    /// [`KernelError::TooLarge`], or [`KernelError::Refused`] when the kernel
    /// refuses the key, its timeout or its permissions (the key is then
    /// removed: it must not outlive the credential or be open wider).
    pub fn put(&self, item: &ItemId, payload: &[u8], lifetime: Duration) -> Result<(), KernelError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(KernelError::TooLarge(payload.len()));
        }
        // A timeout of 0 would mean "never expires" to the kernel.
        let seconds = usize::try_from(lifetime.as_secs().min(u64::from(u32::MAX))).unwrap_or(0);
        if seconds == 0 {
            self.delete(item)?;
            return Ok(());
        }
        let Some(ring) = user_keyring(true)? else { return Ok(()) };
        let key = ring.add_key(&self.description(item), payload).map_err(refused("adding a key"))?;
        if let Err(e) = key.set_timeout(seconds).and_then(|()| key.set_perms(owner_only())) {
            let _ = discard(&ring, key);
            return Err(refused("setting a key's timeout and permissions")(e));
        }
        Ok(())
    }

    /// Remove `item`'s key; whether there was one.
    ///
    /// # Errors
    ///
    /// [`KernelError::Refused`] when the kernel refuses the search or the removal.
    pub fn delete(&self, item: &ItemId) -> Result<bool, KernelError> {
        let Some((ring, key)) = self.find(item)? else { return Ok(false) };
        discard(&ring, key).map_err(refused("removing a key"))?;
        Ok(true)
    }

    /// Remove the keys of `profile`, or all of this cache's; how many.
    ///
    /// # Errors
    ///
    /// [`KernelError::Refused`] when the user keyring cannot be listed.
    pub fn delete_all(&self, profile: Option<&str>) -> Result<usize, KernelError> {
        let Some(ring) = user_keyring(false)? else { return Ok(0) };
        let prefix = self.prefix(profile);
        let listed =
            keyctl_bytes(KEYCTL_READ, KeyRingIdentifier::User as i32).map_err(refused("listing the user keyring"))?;
        let mut removed = 0;
        for id in listed.chunks_exact(4).map(|id| i32::from_ne_bytes([id[0], id[1], id[2], id[3]])) {
            // Keys this user may not view are not ours.
            let Ok(description) = describe(id) else { continue };
            if description.kind == "user"
                && description.text.starts_with(&prefix)
                && discard(&ring, Key::from_id(KeySerialId::new(id))).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The operations of keyctl(2) called directly below.
const KEYCTL_DESCRIBE: libc::c_ulong = 6;
const KEYCTL_READ: libc::c_ulong = 11;

/// All that KEYCTL_READ or KEYCTL_DESCRIBE give for `id`, however much.
///
/// Done here rather than by linux-keyutils: its `KeyRing::get_links` takes
/// the size the kernel reports (all there is) for the size it copied (what
/// fit the buffer), reading past its buffer when a keyring holds more links
/// than asked for, and its `Key::metadata` panics on a description longer
/// than 511 bytes; `@u` may hold any program's keys.
fn keyctl_bytes(operation: libc::c_ulong, id: i32) -> Result<Vec<u8>, KeyError> {
    let mut buffer: Vec<u8> = Vec::new();
    // The size may grow between two calls (a key linked meanwhile): ask again.
    for _ in 0..4 {
        // SAFETY: the kernel writes at most `buffer.len()` bytes at
        // `buffer.as_mut_ptr()` (none for a length of 0) and returns the size
        // of all there is, or -1 and errno.
        let size = unsafe {
            libc::syscall(libc::SYS_keyctl, operation, id as libc::c_ulong, buffer.as_mut_ptr(), buffer.len(), 0_usize)
        };
        let Ok(size) = usize::try_from(size) else { return Err(KeyError::from_errno()) };
        if size <= buffer.len() {
            buffer.truncate(size);
            return Ok(buffer);
        }
        buffer = vec![0; size];
    }
    Err(KeyError::WriteError)
}

/// A key's type and description, as KEYCTL_DESCRIBE gives them
/// (`type;uid;gid;perm;description`).
struct Description {
    kind: String,
    text: String,
}

fn describe(id: i32) -> Result<Description, KeyError> {
    let bytes = keyctl_bytes(KEYCTL_DESCRIBE, id)?;
    let text = String::from_utf8_lossy(bytes.strip_suffix(&[0]).unwrap_or(&bytes)).into_owned();
    let mut fields = text.splitn(5, ';');
    let kind = fields.next().unwrap_or_default().to_string();
    let text = fields.nth(3).unwrap_or_default().to_string();
    Ok(Description { kind, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this machine lets the tests use the user keyring (a container
    /// whose seccomp filter blocks keyctl does not: nothing to test there).
    fn kernel_keyring() -> bool {
        let works = user_keyring(true).is_ok_and(|ring| ring.is_some());
        if !works {
            eprintln!("no kernel keyring here (keyctl blocked?): skipped");
        }
        works
    }

    fn item(profile: &str, key: &str) -> ItemId {
        ItemId { kind: "credential", profile: profile.into(), key: key.into() }
    }

    /// A cache of a directory of its own, its keys removed when the test ends
    /// (the user keyring outlives the test process).
    struct Scope {
        cache: KernelCache,
        _dir: tempfile::TempDir,
    }

    impl Scope {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            Self { cache: KernelCache::new(dir.path()), _dir: dir }
        }
    }

    impl Drop for Scope {
        fn drop(&mut self) {
            let _ = self.cache.delete_all(None);
        }
    }

    #[test]
    fn a_kept_entry_is_read_back_by_its_owner_only_and_expires_with_the_credential() {
        if !kernel_keyring() {
            return;
        }
        let scope = Scope::new();
        let corp = item("corp", "corp.0123");
        assert_eq!(scope.cache.get(&corp).unwrap(), None, "nothing kept yet");
        scope.cache.put(&corp, b"{\"token\":\"s3cret\"}", Duration::from_secs(1)).unwrap();
        assert_eq!(scope.cache.get(&corp).unwrap().as_deref(), Some(&b"{\"token\":\"s3cret\"}"[..]));

        let Ok(Some((_, key))) = scope.cache.find(&corp) else { panic!("the key is in @u") };
        let Description { kind, text } = describe(key.get_id().as_raw_id()).unwrap();
        assert_eq!(kind, "user");
        assert_eq!(text, scope.cache.description(&corp));
        let raw = String::from_utf8(keyctl_bytes(KEYCTL_DESCRIBE, key.get_id().as_raw_id()).unwrap()).unwrap();
        // view, read, write, search, setattr (0x2f) for possessor and user;
        // nothing for group and others.
        assert!(raw.contains(";2f2f0000;"), "{raw}");

        // The kernel drops it when the credential's lifetime is over.
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(scope.cache.get(&corp).unwrap(), None, "expired with the credential");
    }

    #[test]
    fn descriptions_are_unique_per_cache_directory_and_item_and_name_nothing() {
        let one = KernelCache::new(Path::new("/home/alice/.cache/credbroker/credentials"));
        let other = KernelCache::new(Path::new("/tmp/test-env/.cache/credbroker/credentials"));
        let corp = item("corp", "corp.0123");
        let description = one.description(&corp);
        assert!(description.starts_with("credbroker:"), "{description}");
        assert!(!description.contains("corp") && !description.contains("alice"), "names nothing: {description}");
        assert_ne!(description, other.description(&corp), "two caches of one uid never share a key");
        assert_ne!(description, one.description(&item("corp", "corp.4567")));
        assert_ne!(description, one.description(&ItemId { kind: "state", ..corp.clone() }));
        // A profile's keys share a prefix, so `cache clear --provider` finds them.
        assert!(description.starts_with(&one.prefix(Some("corp"))));
        assert!(!one.description(&item("corpx", "corp.0123")).starts_with(&one.prefix(Some("corp"))));
        assert!(!other.description(&corp).starts_with(&one.prefix(None)));
    }

    #[test]
    fn delete_and_delete_all_remove_their_keys_only() {
        if !kernel_keyring() {
            return;
        }
        let (mine, theirs) = (Scope::new(), Scope::new());
        let hour = Duration::from_secs(3600);
        for (profile, key) in [("a", "a.1"), ("a", "a.2"), ("b", "b.1")] {
            mine.cache.put(&item(profile, key), key.as_bytes(), hour).unwrap();
        }
        theirs.cache.put(&item("a", "a.1"), b"another cache", hour).unwrap();

        assert_eq!(mine.cache.delete_all(Some("a")).unwrap(), 2);
        assert_eq!(mine.cache.get(&item("a", "a.1")).unwrap(), None);
        assert_eq!(mine.cache.get(&item("b", "b.1")).unwrap().as_deref(), Some(&b"b.1"[..]));
        assert_eq!(mine.cache.delete_all(None).unwrap(), 1);
        assert_eq!(mine.cache.get(&item("b", "b.1")).unwrap(), None);
        assert_eq!(theirs.cache.get(&item("a", "a.1")).unwrap().as_deref(), Some(&b"another cache"[..]));

        assert!(theirs.cache.delete(&item("a", "a.1")).unwrap());
        assert!(!theirs.cache.delete(&item("a", "a.1")).unwrap(), "nothing left to delete");
    }

    #[test]
    fn a_new_entry_replaces_the_old_and_what_cannot_be_kept_is_not() {
        if !kernel_keyring() {
            return;
        }
        let scope = Scope::new();
        let corp = item("corp", "corp.0123");
        scope.cache.put(&corp, b"old", Duration::from_secs(3600)).unwrap();
        scope.cache.put(&corp, b"new", Duration::from_secs(3600)).unwrap();
        assert_eq!(scope.cache.get(&corp).unwrap().as_deref(), Some(&b"new"[..]));
        // A credential with less than a second left is not kept (a timeout
        // of 0 would mean "forever" to the kernel), and the old one goes.
        scope.cache.put(&corp, b"fleeting", Duration::from_millis(900)).unwrap();
        assert_eq!(scope.cache.get(&corp).unwrap(), None);

        let huge = vec![b'x'; MAX_PAYLOAD + 1];
        assert!(matches!(scope.cache.put(&corp, &huge, Duration::from_secs(60)), Err(KernelError::TooLarge(_))));
        let largest = vec![b'x'; MAX_PAYLOAD];
        if scope.cache.put(&corp, &largest, Duration::from_secs(60)).is_ok() {
            assert_eq!(scope.cache.get(&corp).unwrap().map(|p| p.len()), Some(MAX_PAYLOAD));
        }
    }
}
