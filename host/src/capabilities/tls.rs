//! The TLS roots a plugin's connections trust (`grants.ca-file`), shared by
//! the capabilities that make them (`http`, `ldap`): the system's roots, or
//! the operator's CA bundle instead.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::{GrantError, GrantTable};
use crate::fsutil;

/// One plugin's TLS trust, with the client configuration built on first use
/// (loading root certificates costs milliseconds most runs never need).
#[derive(Debug, Default)]
pub struct TlsPolicy {
    ca_file: Option<PathBuf>,
    config: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl TlsPolicy {
    /// Take `ca-file` from `grants`.
    ///
    /// # Errors
    ///
    /// [`GrantError`] for a value that is not a path.
    pub fn configure(grants: &mut GrantTable) -> Result<Self, GrantError> {
        let ca_file: Option<PathBuf> = grants.take("ca-file")?;
        if let Some(path) = &ca_file
            && !path.is_absolute()
        {
            return Err(GrantError::Invalid {
                key: "ca-file",
                message: format!("`{}` must be absolute", path.display()),
            });
        }
        Ok(Self { ca_file, config: OnceLock::new() })
    }

    /// The operator's CA bundle, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The client configuration.
    ///
    /// # Errors
    ///
    /// Why the CA bundle cannot be used.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.config.get_or_init(|| client_config(self.ca_file.as_deref()).map(Arc::new)).clone()
    }
}

/// A TLS client configuration trusting the CA bundle at `ca_file`, else the
/// system's roots.
///
/// # Errors
///
/// Why the bundle cannot be used.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = fsutil::read_bounded(path, fsutil::bounds::SMALL).map_err(|e| format!("CA file: {e}"))?;
            let mut reader = std::io::BufReader::new(pem.as_slice());
            for cert in rustls_pemfile::certs(&mut reader) {
                let cert = cert.map_err(|e| format!("CA file `{}`: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("CA file `{}`: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("CA file `{}` holds no certificates", path.display()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // Skip the odd unparsable system certificate rather than fail.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
