//! How many bytes a value of the contract takes on the wire between plugin
//! and host: what `max-call-bytes` counts.
//!
//! Counted as the component model lays values out: a string or list costs its
//! content plus 8 bytes (its pointer and length), so a list of three million
//! empty strings is 24 MB, not 0, and every container and case adds its own
//! bytes. That bounds what the host must copy, keep and pass on (a
//! TokenReview, a log line) by the number the operator configured.

use crate::bindings::LoginOutcome;
use crate::bindings::crypto::{PublicKey, RsaPublicKey};
use crate::bindings::http::{Request, Response};
use crate::bindings::ldap::{Entry, SearchRequest};
use crate::bindings::types::{
    Authenticated, ClientCertificate, Credential, CredentialSecret, HostError, PluginError, ReviewOutcome, UserInfo,
};

/// Bytes of a string or list header (pointer and length).
const HEADER: usize = 8;

/// The encoded size of a contract value.
pub trait WireSize {
    /// Bytes on the wire.
    fn wire_size(&self) -> usize;
}

impl WireSize for str {
    fn wire_size(&self) -> usize {
        HEADER + self.len()
    }
}

impl WireSize for String {
    fn wire_size(&self) -> usize {
        self.as_str().wire_size()
    }
}

impl<T: WireSize> WireSize for [T] {
    fn wire_size(&self) -> usize {
        self.iter().fold(HEADER, |sum, item| sum.saturating_add(item.wire_size()))
    }
}

impl<T: WireSize> WireSize for Vec<T> {
    fn wire_size(&self) -> usize {
        self.as_slice().wire_size()
    }
}

impl<T: WireSize + ?Sized> WireSize for &T {
    fn wire_size(&self) -> usize {
        (**self).wire_size()
    }
}

impl<T: WireSize> WireSize for Option<T> {
    fn wire_size(&self) -> usize {
        1 + self.as_ref().map_or(0, WireSize::wire_size)
    }
}

impl<T: WireSize, E: WireSize> WireSize for Result<T, E> {
    fn wire_size(&self) -> usize {
        1 + match self {
            Ok(value) => value.wire_size(),
            Err(error) => error.wire_size(),
        }
    }
}

impl WireSize for () {
    fn wire_size(&self) -> usize {
        0
    }
}

macro_rules! fixed_size {
    ($($ty:ty),*) => {
        $(impl WireSize for $ty {
            fn wire_size(&self) -> usize {
                std::mem::size_of::<$ty>()
            }
        })*
    };
}

fixed_size!(u8, bool, u16, u32, u64, i64);

impl<A: WireSize, B: WireSize> WireSize for (A, B) {
    fn wire_size(&self) -> usize {
        self.0.wire_size().saturating_add(self.1.wire_size())
    }
}

impl<T> WireSize for wasmtime::component::Resource<T> {
    fn wire_size(&self) -> usize {
        4
    }
}

/// Records: the sum of their fields.
macro_rules! record_size {
    ($($ty:ty { $($field:ident),* }),* $(,)?) => {
        $(impl WireSize for $ty {
            fn wire_size(&self) -> usize {
                0usize $(.saturating_add(self.$field.wire_size()))*
            }
        })*
    };
}

record_size! {
    Request { method, url, headers, body, timeout_ms, follow_redirects },
    Response { status, headers, body },
    SearchRequest { base, filter, attributes, size_limit, time_limit_seconds },
    Entry { dn, attributes },
    RsaPublicKey { modulus, exponent },
    UserInfo { username, uid, groups, extra },
    Authenticated { user, audiences },
    ClientCertificate { certificate_pem, private_key_pem },
    Credential { secret, expires_at },
}

impl WireSize for PublicKey {
    fn wire_size(&self) -> usize {
        1 + match self {
            Self::Rsa(key) => key.wire_size(),
            Self::EcPoint(point) | Self::Ed25519(point) => point.wire_size(),
        }
    }
}

impl WireSize for CredentialSecret {
    fn wire_size(&self) -> usize {
        1 + match self {
            Self::Token(token) => token.wire_size(),
            Self::ClientCertificate(cert) => cert.wire_size(),
        }
    }
}

impl WireSize for ReviewOutcome {
    fn wire_size(&self) -> usize {
        1 + match self {
            Self::Authenticated(accepted) => accepted.wire_size(),
            Self::Rejected(reason) => reason.wire_size(),
        }
    }
}

impl WireSize for LoginOutcome {
    fn wire_size(&self) -> usize {
        1 + match self {
            Self::Authenticated(user) => user.wire_size(),
            Self::Rejected(reason) => reason.wire_size(),
        }
    }
}

impl WireSize for PluginError {
    fn wire_size(&self) -> usize {
        1 + match self {
            Self::Misconfigured(m) | Self::Denied(m) | Self::Unavailable(m) | Self::Throttled(m) | Self::Failed(m) => {
                m.wire_size()
            }
        }
    }
}

impl WireSize for HostError {
    fn wire_size(&self) -> usize {
        1 + match self {
            Self::Denied(m) | Self::Invalid(m) | Self::Unreachable(m) | Self::Timeout(m) => m.wire_size(),
            Self::NotInteractive => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_strings_are_not_free() {
        let user = UserInfo { username: "u".into(), uid: None, groups: vec![String::new(); 1000], extra: Vec::new() };
        assert_eq!(user.wire_size(), 9 + 1 + (8 + 8 * 1000) + 8);
        let headers = vec![("a".to_string(), "b".to_string())];
        assert_eq!(headers.wire_size(), 8 + 18);
    }
}
