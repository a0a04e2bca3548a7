//! The Windows Credential Manager: generic credentials of the current user,
//! which Windows keeps encrypted with the user's logon secret (DPAPI) and
//! shows under "Windows Credentials".
//!
//! An item is the generic credential named
//! `credbroker/<kind>/<profile>/<key>` (profile and key percent-escape `/`,
//! `#`, `*` and `%`, so names never collide and a prefix filter picks one
//! profile). A credential's secret holds at most 2,560 bytes and an ID token
//! with its refresh token can be longer, so a secret is stored in parts:
//! the item itself holds a header (a generation number and the part count)
//! and the first part; the rest are `<item>#<generation>#<n>`. A writer
//! stores the new generation's parts, then the item (one atomic write), then
//! removes the old parts, so a reader sees the old secret or the new one,
//! never a mix; one that finds a part gone (a write in between) reads again.

use std::collections::HashMap;

use windows_sys::Win32::Foundation::{ERROR_NOT_FOUND, FILETIME};
use windows_sys::Win32::Security::Credentials::{
    CRED_PERSIST_LOCAL_MACHINE, CRED_TYPE_GENERIC, CREDENTIALW, CredDeleteW, CredEnumerateW, CredFree, CredReadW,
    CredWriteW,
};

use super::{APPLICATION, ItemId, KeyringError, Selector, escape};

/// The most a credential's secret may hold (`CRED_MAX_CREDENTIAL_BLOB_SIZE`).
const PART_BYTES: usize = 5 * 512;
/// Generation (u32) and part count (u16), little-endian, before the first part.
const HEADER_BYTES: usize = 6;
/// Parts per secret: 160 KB, far above any cached credential.
const MAX_PARTS: usize = 64;
/// The longest comment Windows keeps (`CRED_MAX_STRING_LENGTH`).
const MAX_COMMENT: usize = 256;

/// The current user's Credential Manager. Its calls are local and quick, so
/// they run where they are awaited.
#[derive(Debug, Clone)]
pub struct Keyring {
    _private: (),
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(Some(0)).collect()
}

fn item_name(kind: &str, profile: &str, key: &str) -> String {
    format!("{APPLICATION}/{kind}/{}/{}", escape(profile), escape(key))
}

fn part_name(item: &str, generation: u32, part: usize) -> String {
    format!("{item}#{generation:08x}#{part}")
}

fn failed(call: &'static str) -> KeyringError {
    KeyringError::Call { call, message: std::io::Error::last_os_error().to_string() }
}

/// A credential's secret, or `None` when there is no such credential.
fn read(name: &str) -> Result<Option<Vec<u8>>, KeyringError> {
    let target = wide(name);
    let mut credential: *mut CREDENTIALW = std::ptr::null_mut();
    // SAFETY: a NUL-terminated name; the credential is freed with CredFree below.
    if unsafe { CredReadW(target.as_ptr(), CRED_TYPE_GENERIC, 0, &mut credential) } == 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(ERROR_NOT_FOUND as i32) {
            return Ok(None);
        }
        return Err(KeyringError::Call { call: "reading a secret", message: error.to_string() });
    }
    // SAFETY: CredReadW filled a CREDENTIALW whose blob has the size it says.
    // (wine packs what it returns without aligning it: read unaligned.)
    let secret = unsafe {
        let filled = credential.read_unaligned();
        let blob = filled.CredentialBlob;
        let size = filled.CredentialBlobSize as usize;
        let secret = if blob.is_null() { Vec::new() } else { std::slice::from_raw_parts(blob, size).to_vec() };
        CredFree(credential.cast());
        secret
    };
    Ok(Some(secret))
}

fn write(name: &str, comment: &str, secret: &[u8]) -> Result<(), KeyringError> {
    let mut target = wide(name);
    let comment: String = comment.chars().take(MAX_COMMENT - 1).collect();
    let mut comment = wide(&comment);
    let mut user = wide(APPLICATION);
    let credential = CREDENTIALW {
        Flags: 0,
        Type: CRED_TYPE_GENERIC,
        TargetName: target.as_mut_ptr(),
        Comment: comment.as_mut_ptr(),
        LastWritten: FILETIME { dwLowDateTime: 0, dwHighDateTime: 0 },
        CredentialBlobSize: secret.len() as u32,
        CredentialBlob: secret.as_ptr().cast_mut(),
        Persist: CRED_PERSIST_LOCAL_MACHINE,
        AttributeCount: 0,
        Attributes: std::ptr::null_mut(),
        TargetAlias: std::ptr::null_mut(),
        UserName: user.as_mut_ptr(),
    };
    // SAFETY: every pointer is to a live, NUL-terminated buffer or the
    // secret of the length given; CredWriteW copies them.
    if unsafe { CredWriteW(&credential, 0) } == 0 {
        return Err(failed("storing a secret"));
    }
    Ok(())
}

/// Remove a credential; whether there was one.
fn remove(name: &str) -> Result<bool, KeyringError> {
    let target = wide(name);
    // SAFETY: a NUL-terminated name.
    if unsafe { CredDeleteW(target.as_ptr(), CRED_TYPE_GENERIC, 0) } == 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(ERROR_NOT_FOUND as i32) {
            return Ok(false);
        }
        return Err(KeyringError::Call { call: "removing a secret", message: error.to_string() });
    }
    Ok(true)
}

/// The names of the credentials whose names start with `prefix`.
fn names_under(prefix: &str) -> Result<Vec<String>, KeyringError> {
    let filter = wide(&format!("{prefix}*"));
    let mut count = 0u32;
    let mut list: *mut *mut CREDENTIALW = std::ptr::null_mut();
    // SAFETY: a NUL-terminated filter; the list is freed with CredFree below.
    if unsafe { CredEnumerateW(filter.as_ptr(), 0, &mut count, &mut list) } == 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(ERROR_NOT_FOUND as i32) {
            return Ok(Vec::new());
        }
        return Err(KeyringError::Call { call: "listing secrets", message: error.to_string() });
    }
    let mut names = Vec::with_capacity(count as usize);
    // SAFETY: CredEnumerateW returned `count` credential pointers, each with
    // a NUL-terminated target name. (wine packs them without aligning them:
    // everything is read unaligned.)
    unsafe {
        for index in 0..count as usize {
            let name = list.add(index).read_unaligned().read_unaligned().TargetName;
            let len = (0..).take_while(|&i| name.add(i).read_unaligned() != 0).count();
            let units: Vec<u16> = (0..len).map(|i| name.add(i).read_unaligned()).collect();
            names.push(String::from_utf16_lossy(&units));
        }
        CredFree(list.cast());
    }
    Ok(names)
}

/// What an item's own credential holds: the generation, the part count,
/// and the first part.
fn header(stored: &[u8]) -> Option<(u32, usize, &[u8])> {
    let generation = u32::from_le_bytes(stored.get(..4)?.try_into().ok()?);
    let parts = usize::from(u16::from_le_bytes(stored.get(4..6)?.try_into().ok()?));
    (1..=MAX_PARTS).contains(&parts).then_some((generation, parts, &stored[HEADER_BYTES..]))
}

fn new_generation() -> u32 {
    let mut bytes = [0u8; 4];
    // A clash with the previous generation only matters if both happen at
    // once; the time makes a failed random source harmless too.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    u32::from_le_bytes(bytes) ^ nanos
}

impl Keyring {
    /// The Credential Manager is part of every Windows session.
    ///
    /// # Errors
    ///
    /// Never.
    pub fn check_bus() -> Result<(), KeyringError> {
        Ok(())
    }

    /// The current user's Credential Manager.
    ///
    /// # Errors
    ///
    /// Never: a store that refuses says so at its first call.
    pub async fn connect(_first_read: Option<&ItemId>) -> Result<Self, KeyringError> {
        Ok(Self { _private: () })
    }

    /// The secret of `item`, if there is one.
    ///
    /// # Errors
    ///
    /// [`KeyringError::Call`] when the Credential Manager fails.
    pub async fn get(&self, item: &ItemId) -> Result<Option<Vec<u8>>, KeyringError> {
        let name = item_name(item.kind, &item.profile, &item.key);
        // A second pass only when a write replaced the parts while we read.
        for _ in 0..2 {
            let Some(stored) = read(&name)? else { return Ok(None) };
            let Some((generation, parts, first)) = header(&stored) else {
                return Err(KeyringError::Call {
                    call: "reading a secret",
                    message: format!("`{name}` is not in credbroker's format"),
                });
            };
            let mut secret = first.to_vec();
            let mut complete = true;
            for part in 1..parts {
                match read(&part_name(&name, generation, part))? {
                    Some(bytes) => secret.extend_from_slice(&bytes),
                    None => {
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                return Ok(Some(secret));
            }
        }
        Err(KeyringError::Call { call: "reading a secret", message: format!("parts of `{name}` are missing") })
    }

    /// Store `secret` as `item` (replacing it), its comment `label` for people
    /// who browse the Credential Manager.
    ///
    /// # Errors
    ///
    /// [`KeyringError::Call`] when the Credential Manager fails or the secret
    /// is larger than [`MAX_PARTS`] parts.
    pub async fn put(&self, item: &ItemId, label: &str, secret: &[u8]) -> Result<(), KeyringError> {
        let name = item_name(item.kind, &item.profile, &item.key);
        let first_len = secret.len().min(PART_BYTES - HEADER_BYTES);
        let (first, rest) = secret.split_at(first_len);
        let parts = 1 + rest.len().div_ceil(PART_BYTES);
        if parts > MAX_PARTS {
            return Err(KeyringError::Call {
                call: "storing a secret",
                message: format!("{} bytes is more than the Credential Manager item can hold", secret.len()),
            });
        }
        let old = read(&name)?.as_deref().and_then(header).map(|(generation, parts, _)| (generation, parts));
        let generation = loop {
            let generation = new_generation();
            if old.is_none_or(|(old, _)| old != generation) {
                break generation;
            }
        };
        for (index, chunk) in rest.chunks(PART_BYTES).enumerate() {
            write(&part_name(&name, generation, index + 1), label, chunk)?;
        }
        let mut stored = Vec::with_capacity(HEADER_BYTES + first.len());
        stored.extend_from_slice(&generation.to_le_bytes());
        stored.extend_from_slice(&(parts as u16).to_le_bytes());
        stored.extend_from_slice(first);
        write(&name, label, &stored)?;
        if let Some((generation, parts)) = old {
            for part in 1..parts {
                remove(&part_name(&name, generation, part))?;
            }
        }
        Ok(())
    }

    /// Remove `item`; whether there was one.
    ///
    /// # Errors
    ///
    /// [`KeyringError::Call`] when the Credential Manager fails.
    pub async fn delete(&self, item: &ItemId) -> Result<bool, KeyringError> {
        let name = item_name(item.kind, &item.profile, &item.key);
        let existed = remove(&name)?;
        // Its parts of every generation (one left by a writer that died too).
        for part in names_under(&format!("{name}#"))? {
            remove(&part)?;
        }
        Ok(existed)
    }

    /// Remove every item `selector` picks; how many there were, by kind.
    ///
    /// # Errors
    ///
    /// [`KeyringError::Call`] when the Credential Manager fails.
    pub async fn delete_all(&self, selector: Selector<'_>) -> Result<HashMap<&'static str, usize>, KeyringError> {
        let mut removed = HashMap::new();
        for kind in ["credential", "state"] {
            if selector.kind.is_some_and(|k| k != kind) {
                continue;
            }
            let prefix = match (selector.profile, selector.key) {
                (Some(profile), Some(key)) => item_name(kind, profile, key),
                (Some(profile), None) => format!("{APPLICATION}/{kind}/{}/", escape(profile)),
                (None, _) => format!("{APPLICATION}/{kind}/"),
            };
            let mut count = 0;
            for name in names_under(&prefix)? {
                // The item a part belongs to is the name before its `#`.
                let item = name.split('#').next().unwrap_or(&name);
                let wanted = match (selector.profile, selector.key) {
                    (Some(_), Some(_)) => item == prefix,
                    (None, Some(key)) => item.ends_with(&format!("/{}", escape(key))),
                    _ => true,
                };
                if !wanted {
                    continue;
                }
                if remove(&name)? && !name.contains('#') {
                    count += 1;
                }
            }
            removed.insert(kind, count);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_collide_or_match_a_wider_filter() {
        assert_eq!(item_name("credential", "a/b", "c"), "credbroker/credential/a%2Fb/c");
        assert_eq!(item_name("state", "p*", "k#1%"), "credbroker/state/p%2A/k%231%25");
        assert_ne!(item_name("state", "a/b", "c"), item_name("state", "a", "b/c"));
    }

    #[test]
    fn headers_are_checked() {
        assert_eq!(header(&[1, 0, 0, 0, 2, 0, b'x']), Some((1, 2, &b"x"[..])));
        assert_eq!(header(&[1, 0, 0, 0, 0, 0]), None);
        assert_eq!(header(&[1, 0]), None);
    }
}
