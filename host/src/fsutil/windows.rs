//! Private on Windows: a directory is private when its access list allows
//! the current user and nobody else but the operating system (`SYSTEM`) and
//! the machine's administrators, who can read every file anyway (the rule
//! OpenSSH for Windows applies to private keys); files created in it inherit
//! that list, so they are private by construction. `%LOCALAPPDATA%` is already the user's, and this makes
//! credbroker's directories independent of how it was set up. Links are
//! never followed out of a directory: an open checks the path the handle
//! really names.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::ptr;

use windows_sys::Win32::Foundation::{CloseHandle, ERROR_SUCCESS, HANDLE, HLOCAL, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW,
    SDDL_REVISION_1, SE_FILE_OBJECT, SetNamedSecurityInfoW,
};
use windows_sys::Win32::Security::{
    ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, ACL_SIZE_INFORMATION, AclSizeInformation, DACL_SECURITY_INFORMATION, EqualSid,
    GetAce, GetAclInformation, GetSecurityDescriptorDacl, GetTokenInformation, OWNER_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER,
    TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateDirectoryW, FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_OPEN_REPARSE_POINT, FILE_NAME_NORMALIZED,
    GetFinalPathNameByHandleW, VOLUME_NAME_DOS,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::{DirPrivacy, PrivateDirError};

/// `ACCESS_ALLOWED_ACE_TYPE`: the only kind of entry a private list holds.
const ACCESS_ALLOWED: u8 = 0;
/// `ACCESS_DENIED_ACE_TYPE`.
const ACCESS_DENIED: u8 = 1;

fn wide(text: &std::ffi::OsStr) -> Vec<u16> {
    text.encode_wide().chain(Some(0)).collect()
}

/// Memory Windows allocated for us with `LocalAlloc`, freed on drop.
struct Local(*mut core::ffi::c_void);

impl Drop for Local {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from an API documented to return
            // LocalAlloc'd memory, and is freed once.
            unsafe { LocalFree(self.0 as HLOCAL) };
        }
    }
}

/// The current user's SID: the bytes and its string form (`S-1-5-21-...`).
struct UserSid {
    /// `TOKEN_USER` followed by the SID it points into.
    buffer: Vec<u64>,
    text: String,
}

impl UserSid {
    fn current() -> io::Result<Self> {
        let mut token: HANDLE = ptr::null_mut();
        // SAFETY: the pseudo-handle of this process; `token` receives a handle we close below.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut needed = 0u32;
        // SAFETY: a size query (null buffer, zero length) on our token.
        unsafe { GetTokenInformation(token, TokenUser, ptr::null_mut(), 0, &mut needed) };
        // u64 elements keep TOKEN_USER's pointer aligned.
        let mut buffer = vec![0u64; (needed as usize).div_ceil(8).max(1)];
        // SAFETY: the buffer is at least `needed` bytes; the token is open.
        let ok = unsafe { GetTokenInformation(token, TokenUser, buffer.as_mut_ptr().cast(), needed, &mut needed) };
        let error = io::Error::last_os_error();
        // SAFETY: closes the token opened above, once.
        unsafe { CloseHandle(token) };
        if ok == 0 {
            return Err(error);
        }
        let mut sid = Self { buffer, text: String::new() };
        sid.text = sid_string(sid.sid()).ok_or_else(io::Error::last_os_error)?;
        Ok(sid)
    }

    fn sid(&self) -> PSID {
        // SAFETY: the buffer holds a TOKEN_USER written by GetTokenInformation.
        unsafe { (*self.buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid }
    }

    /// A security descriptor whose protected list allows this user,
    /// `SYSTEM` and the administrators, inherited by everything created below.
    fn private_descriptor(&self) -> io::Result<Local> {
        let sddl = wide(format!("D:P(A;OICI;FA;;;{})(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)", self.text).as_ref());
        let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: a NUL-terminated SDDL string; the descriptor is LocalAlloc'd.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Local(descriptor))
    }
}

/// `sid` as a string (`S-1-5-...`), if Windows can say it.
fn sid_string(sid: PSID) -> Option<String> {
    let mut string = ptr::null_mut();
    // SAFETY: a SID we hold; the string is LocalAlloc'd and freed by `Local`.
    if sid.is_null() || unsafe { ConvertSidToStringSidW(sid, &mut string) } == 0 {
        return None;
    }
    let _free = Local(string.cast());
    // SAFETY: a NUL-terminated UTF-16 string from ConvertSidToStringSidW.
    let len = (0..).take_while(|&i| unsafe { *string.add(i) } != 0).count();
    // SAFETY: `len` u16s before the NUL are initialised.
    Some(String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(string, len) }))
}

/// `sid` as a string, for messages.
fn sid_text(sid: PSID) -> String {
    sid_string(sid).unwrap_or_else(|| "an unknown account".into())
}

/// `SYSTEM` and the built-in Administrators group: allowed in a private list.
const TRUSTED_SIDS: [&str; 2] = ["S-1-5-18", "S-1-5-32-544"];

/// The accounts other than `user` and [`TRUSTED_SIDS`] that `dacl` allows in
/// (everyone for a missing list).
fn others_allowed(dacl: *mut ACL, user: &UserSid) -> Vec<String> {
    if dacl.is_null() {
        return vec!["everyone (no access list)".into()];
    }
    let mut info = ACL_SIZE_INFORMATION { AceCount: 0, AclBytesInUse: 0, AclBytesFree: 0 };
    // SAFETY: a valid ACL and an output of the size passed.
    let ok = unsafe {
        GetAclInformation(
            dacl,
            (&mut info as *mut ACL_SIZE_INFORMATION).cast(),
            size_of_val(&info) as u32,
            AclSizeInformation,
        )
    };
    if ok == 0 {
        return vec!["an unreadable access list".into()];
    }
    let mut others = Vec::new();
    for index in 0..info.AceCount {
        let mut ace = ptr::null_mut();
        // SAFETY: index < AceCount of a valid ACL.
        if unsafe { GetAce(dacl, index, &mut ace) } == 0 {
            others.push("an unreadable entry".into());
            continue;
        }
        // SAFETY: every ACE starts with an ACE_HEADER.
        let header = unsafe { *ace.cast::<ACE_HEADER>() };
        if header.AceType == ACCESS_DENIED {
            // Deny entries only take access away.
            continue;
        }
        if header.AceType != ACCESS_ALLOWED {
            others.push(format!("an entry of type {}", header.AceType));
            continue;
        }
        // SAFETY: an ACCESS_ALLOWED_ACE, whose SID starts at SidStart.
        let sid = unsafe { ptr::addr_of_mut!((*ace.cast::<ACCESS_ALLOWED_ACE>()).SidStart) }.cast();
        // SAFETY: two valid SIDs.
        if unsafe { EqualSid(sid, user.sid()) } == 0 {
            let text = sid_text(sid);
            if !TRUSTED_SIDS.contains(&text.as_str()) {
                others.push(text);
            }
        }
    }
    others
}

/// Whether an existing directory is the user's and its access list lets
/// nobody else in.
pub(super) fn dir_privacy(path: &Path, _meta: &fs::Metadata) -> Result<DirPrivacy, PrivateDirError> {
    let io_err = |error| PrivateDirError::Io { path: path.to_path_buf(), error };
    let user = UserSid::current().map_err(io_err)?;
    let name = wide(path.as_os_str());
    let mut owner: PSID = ptr::null_mut();
    let mut dacl: *mut ACL = ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: a NUL-terminated path; the outputs point into `descriptor`, freed below.
    let status = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut owner,
            ptr::null_mut(),
            &mut dacl,
            ptr::null_mut(),
            &mut descriptor,
        )
    };
    if status != ERROR_SUCCESS {
        return Err(io_err(io::Error::from_raw_os_error(status as i32)));
    }
    let _free = Local(descriptor);
    // SAFETY: two valid SIDs.
    if !owner.is_null() && unsafe { EqualSid(owner, user.sid()) } == 0 {
        return Err(PrivateDirError::ForeignOwner {
            path: path.to_path_buf(),
            owner: sid_text(owner),
            user: user.text.clone(),
        });
    }
    let others = others_allowed(dacl, &user);
    Ok(if others.is_empty() {
        DirPrivacy::Private
    } else {
        DirPrivacy::Open { before: format!("an access list that also allowed {}", others.join(", ")) }
    })
}

/// What [`narrow_dir`] did, for the warning.
pub(super) const NARROWED: &str = "replaced it with one that allows you alone";

/// Replace a directory's access list by the private one (inherited by what
/// is in it).
pub(super) fn narrow_dir(path: &Path) -> io::Result<()> {
    let private = UserSid::current()?.private_descriptor()?;
    let name = wide(path.as_os_str());
    let (mut present, mut defaulted, mut private_dacl) = (0, 0, ptr::null_mut());
    // SAFETY: a descriptor made by ConvertStringSecurityDescriptor...; the
    // list points into it and is used while it lives.
    let status = unsafe {
        GetSecurityDescriptorDacl(private.0, &mut present, &mut private_dacl, &mut defaulted);
        SetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            private_dacl,
            ptr::null(),
        )
    };
    if status != ERROR_SUCCESS {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    Ok(())
}

/// Create `path` with the private access list; missing parents are created
/// as Windows creates them (under `%LOCALAPPDATA%` they are the user's).
pub(super) fn create_private_dir(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let user = UserSid::current()?;
    let descriptor = user.private_descriptor()?;
    let attributes = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.0,
        bInheritHandle: 0,
    };
    let name = wide(path.as_os_str());
    // SAFETY: a NUL-terminated path and a valid SECURITY_ATTRIBUTES.
    if unsafe { CreateDirectoryW(name.as_ptr(), &attributes) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `meta` describes a regular file, not a link: its privacy comes
/// from the private directory it is in (checked when the directory is
/// opened), whose access list every file created there inherits.
pub fn is_private_file(meta: &fs::Metadata) -> bool {
    meta.file_type().is_file() && meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT == 0
}

/// Files inherit the private directory's access list: nothing to add.
pub(super) fn private_file_options(_options: &mut fs::OpenOptions) {}

pub(super) fn open_nofollow(options: &mut fs::OpenOptions, path: &Path) -> io::Result<fs::File> {
    // The reparse point itself is opened (not its target), then refused.
    let file = options.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT).open(path)?;
    if file.metadata()?.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "it is a symbolic link or junction"));
    }
    Ok(file)
}

/// Windows has no FIFOs in the file system, and opening a file never waits.
pub(super) fn nonblocking_read_options(_options: &mut fs::OpenOptions) {}

/// What kind of thing `file_type` is, when it is not a regular file.
pub(super) fn not_regular(file_type: fs::FileType) -> Option<&'static str> {
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("directory")
    } else if file_type.is_symlink() {
        Some("symbolic link")
    } else {
        Some("special file")
    }
}

/// Identity of a file's content for caches and reload checks: it changes
/// when the file is rewritten or replaced (creation and write times, size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentStamp(u64, u64, u64);

impl ContentStamp {
    /// The stamp of `meta`.
    pub fn of(meta: &fs::Metadata) -> Self {
        Self(meta.creation_time(), meta.last_write_time(), meta.file_size())
    }
}

/// The full path the open `file` really names (`\\?\C:\...`), links resolved.
fn final_path(file: &fs::File) -> io::Result<PathBuf> {
    let handle = file.as_raw_handle();
    let mut buffer = vec![0u16; 512];
    loop {
        // SAFETY: an open handle and a buffer of the length passed.
        let len = unsafe {
            GetFinalPathNameByHandleW(
                handle,
                buffer.as_mut_ptr(),
                buffer.len() as u32,
                FILE_NAME_NORMALIZED | VOLUME_NAME_DOS,
            )
        } as usize;
        if len == 0 {
            return Err(io::Error::last_os_error());
        }
        if len < buffer.len() {
            return Ok(PathBuf::from(OsString::from_wide(&buffer[..len])));
        }
        buffer.resize(len + 1, 0);
    }
}

/// The error [`open_beneath`] returns for a path whose file lies outside.
#[derive(Debug, thiserror::Error)]
#[error("the path leads out of the granted directory")]
struct LeadsOutside;

/// Whether `error`, from [`open_beneath`], says the path would leave the directory.
pub fn leads_outside(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<LeadsOutside>())
}

/// Open the file at `relative` (normal components only) beneath the directory
/// `dir`, never anything outside it: the file is opened (links inside `dir`
/// are followed, like a mounted Secret's), then the path its handle really
/// names must lie below `dir`'s. The check is on the open handle, so
/// renaming entries while this runs cannot make it read something outside.
///
/// # Errors
///
/// The OS error; one [`leads_outside`] recognises for a path that leaves `dir`.
pub fn open_beneath(dir: &Path, relative: &Path) -> io::Result<fs::File> {
    if !relative.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "only plain path components below the directory"));
    }
    let root = fs::canonicalize(dir)?;
    let file = fs::OpenOptions::new().read(true).open(dir.join(relative))?;
    let real = final_path(&file)?;
    if real == root || !real.starts_with(&root) {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, LeadsOutside));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn private_dirs_are_created_checked_and_stay_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("b");
        assert_eq!(ensure_private_dir(&dir).unwrap(), DirState::Created);
        assert_eq!(dir_privacy(&dir).unwrap(), DirPrivacy::Private);
        assert_eq!(ensure_private_dir(&dir).unwrap(), DirState::Existed);
        // A file written there is private by inheritance, and read back.
        write_private_atomic(&dir, "x", b"two").unwrap();
        let file = open_nofollow(fs::OpenOptions::new().read(true), &dir.join("x")).unwrap();
        assert!(is_private_file(&file.metadata().unwrap()));
    }

    #[test]
    fn a_file_is_not_a_private_directory() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        fs::write(&file, b"").unwrap();
        assert!(matches!(ensure_private_dir(&file), Err(PrivateDirError::NotADirectory(_))));
    }

    #[test]
    fn opens_beneath_a_directory_stay_in_it() {
        let root = tempfile::tempdir().unwrap();
        let granted = root.path().join("granted");
        fs::create_dir_all(granted.join("sub")).unwrap();
        fs::write(granted.join("sub").join("in.txt"), b"in").unwrap();
        fs::write(root.path().join("outside.txt"), b"out").unwrap();
        let mut text = String::new();
        use std::io::Read;
        open_beneath(&granted, Path::new("sub/in.txt")).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "in");
        let error = open_beneath(&granted, Path::new("../outside.txt")).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(open_beneath(&granted, Path::new("missing.txt")).is_err());
    }

    #[test]
    fn stamps_change_with_the_content() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("f");
        fs::write(&path, b"one").unwrap();
        let before = ContentStamp::of(&fs::metadata(&path).unwrap());
        fs::write(&path, b"three").unwrap();
        assert_ne!(ContentStamp::of(&fs::metadata(&path).unwrap()), before);
    }
}
