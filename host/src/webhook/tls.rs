//! The webhook's TLS: certificate, key and optional client CA from files,
//! reloaded when they change (Kubernetes rotates mounted Secrets in place).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// The files the TLS configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle; when set, client certificates must be signed by it.
    pub client_ca: Option<PathBuf>,
    /// Let clients without a certificate complete the handshake (people logging
    /// in have none); the server then requires one per path.
    pub client_cert_optional: bool,
}

/// TLS files that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read `{}`: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file holds no usable PEM of the expected kind.
    #[error("`{}` {what}", path.display())]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the combination (e.g. key does not match certificate).
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// Identity of a file's current content: changes when the file is replaced
/// or rewritten.
type Stamp = Option<crate::fsutil::ContentStamp>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().map(|m| crate::fsutil::ContentStamp::of(&m))
}

/// A rustls server configuration that follows its files.
pub struct ReloadingTls {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
    stamps: Mutex<Vec<Stamp>>,
}

impl ReloadingTls {
    /// Load the files.
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming the unusable file.
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let stamps = Self::stamps_of(&files);
        let config = build(&files)?;
        Ok(Self { files, current: RwLock::new(Arc::new(config)), stamps: Mutex::new(stamps) })
    }

    fn stamps_of(files: &TlsFiles) -> Vec<Stamp> {
        let mut paths = vec![files.cert.as_path(), files.key.as_path()];
        paths.extend(files.client_ca.as_deref());
        paths.into_iter().map(stamp).collect()
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reload when a file changed. Returns whether it did.
    ///
    /// # Errors
    ///
    /// When the changed files are unusable; the previous configuration stays.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = Self::stamps_of(&self.files);
        let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        if *stamps == now {
            return Ok(false);
        }
        // Remember the new stamps even on failure, so a broken file is reported
        // once, not every poll; a later fix changes the stamps again.
        *stamps = now;
        let config = build(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(true)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::fsutil::read_bounded(path, crate::fsutil::bounds::SMALL)
        .map_err(|error| TlsError::Read { path: path.to_path_buf(), error: std::io::Error::other(error.reason()) })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Content { path: path.to_path_buf(), what: format!("is not PEM: {e}") })?;
    if certs.is_empty() {
        return Err(TlsError::Content { path: path.to_path_buf(), what: "holds no certificate".into() });
    }
    Ok(certs)
}

fn build(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|e| TlsError::Content { path: files.key.clone(), what: format!("holds no private key: {e}") })?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(path)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Content { path: path.clone(), what: format!("has a bad CA: {e}") })?;
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if files.client_cert_optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
