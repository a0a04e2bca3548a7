//! Talking to an OCI registry: pulling and pushing plugins and their
//! signatures, with the credentials and TLS settings users already have
//! (docker's `config.json`, a per-registry CA file, plain HTTP only for
//! loopback registries).
//!
//! The registry v2 protocol (manifests, blobs, basic and bearer-token auth)
//! is `oci-client`'s; what is pulled is checked here: the manifest against
//! its digest and the wasm artifact layout, the component against its
//! layer's digest and size.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use oci_client::Client;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use tokio::io::AsyncWrite;

use super::artifact::{self, Descriptor, MANIFEST_MEDIA_TYPE};
use super::cosign::{self, Signature};
use super::reference::OciReference;

/// Docker's image manifest (schema 2), which older cosign releases write signatures as.
const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// How long one registry request may take to connect, and to go quiet.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest manifest read (a wasm artifact's is well under 1 KiB).
const MAX_MANIFEST: usize = 4 * 1024 * 1024;
/// Largest signature payload read.
const MAX_PAYLOAD: u64 = 64 * 1024;
/// Most signatures looked at for one artifact.
const MAX_SIGNATURES: usize = 32;

/// How to reach one registry.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// A PEM CA bundle that replaces the system roots for this registry.
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP (loopback registries only; checked when the policy loads).
    pub insecure: bool,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry cannot be reached (connection refused, DNS, timeout).
    #[error("cannot reach the registry {registry}: {detail}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// Why.
        detail: String,
    },
    /// The registry answered over plain HTTP where TLS was expected.
    #[error(
        "the registry {registry} does not speak TLS (it answered in plain HTTP); plain HTTP is used only for a \
         loopback registry marked `insecure = true` in [plugins.registries.\"{registry}\"]"
    )]
    NotTls {
        /// The registry.
        registry: String,
    },
    /// TLS failed (an untrusted or mismatched certificate).
    #[error(
        "TLS with the registry {registry} failed: {detail}; grant its CA with ca-file in [plugins.registries.\"{registry}\"]"
    )]
    Tls {
        /// The registry.
        registry: String,
        /// Why.
        detail: String,
    },
    /// The registry refused the credentials (HTTP 401 or 403).
    #[error("the registry {registry} refused access to {repository} (HTTP 401 Unauthorized): {hint}")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What to do.
        hint: String,
    },
    /// The tag or digest does not exist.
    #[error("{reference} does not exist in the registry")]
    NotFound {
        /// The reference.
        reference: String,
    },
    /// What the registry sent is not what its digest says.
    #[error("{reference}: {what} does not match its digest (expected {expected}, got {actual}); refusing it")]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// The manifest or the component.
        what: &'static str,
        /// The digest it should have.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// It is not a wasm artifact with one component.
    #[error("{reference} is not a credbroker plugin: {detail}")]
    NotAPlugin {
        /// The reference.
        reference: String,
        /// What is wrong.
        detail: String,
    },
    /// The docker configuration cannot be read.
    #[error("{0}")]
    Credentials(String),
    /// Anything else the registry answered.
    #[error("the registry {registry} failed: {detail}")]
    Other {
        /// The registry.
        registry: String,
        /// What it said (escaped, bounded).
        detail: String,
    },
}

impl RegistryError {
    /// Whether the registry could not be reached at all (a cached copy may
    /// then be used, with a warning).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// An escaped, bounded rendering of a text that came from the network.
fn shown(text: &str) -> String {
    let mut text: String = text.chars().take(300).collect();
    if text.len() >= 300 {
        text.push('…');
    }
    crate::boundary::text::name(&text).into_owned()
}

/// An open connection to one registry, with the user's credentials for it.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    registry: String,
    /// Whether credentials came from docker's configuration (for the hint on a 401).
    credentials_from: Option<PathBuf>,
}

/// Run `future` to completion on a runtime of its own, on a thread of its
/// own: callable from synchronous code and from inside another runtime alike.
pub fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => Some(runtime.block_on(future)),
                Err(e) => {
                    tracing::error!("cannot start an async runtime for the registry: {e}");
                    None
                }
            })
            .join()
            .ok()
            .flatten()
    })
    .unwrap_or_else(|| panic!("the registry thread failed"))
}

impl Registry {
    /// Connect to `reference`'s registry as `connection` says, with the
    /// credentials docker's configuration holds for it.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Credentials`] when docker's configuration or the CA
    /// file is unusable.
    pub fn connect(reference: &OciReference, connection: &Connection) -> Result<Self, RegistryError> {
        // reqwest (inside oci-client) takes the process's rustls provider: ours.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = reference.registry.clone();
        let mut config = ClientConfig {
            protocol: if connection.insecure { ClientProtocol::Http } else { ClientProtocol::Https },
            read_timeout: Some(NETWORK_TIMEOUT),
            connect_timeout: Some(NETWORK_TIMEOUT),
            user_agent: concat!("credbroker/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        if let Some(ca_file) = &connection.ca_file {
            let pem = crate::fsutil::read_bounded(ca_file, crate::fsutil::bounds::SMALL)
                .map_err(|e| RegistryError::Credentials(format!("the CA file for {registry}: {e}")))?;
            config.tls_certs_only = vec![Certificate { encoding: CertificateEncoding::Pem, data: pem }];
        }
        let client = Client::try_from(config).map_err(|e| {
            RegistryError::Credentials(format!(
                "cannot set up a client for the registry {registry}: {}",
                shown(&e.to_string())
            ))
        })?;
        let (auth, credentials_from) = docker_credentials(&registry)?;
        Ok(Self { client, auth, registry, credentials_from })
    }

    fn error(&self, reference: &OciReference, error: OciDistributionError) -> RegistryError {
        let registry = self.registry.clone();
        let unauthorized = || RegistryError::Unauthorized {
            registry: registry.clone(),
            repository: reference.repository.clone(),
            hint: match &self.credentials_from {
                Some(file) => {
                    format!("the credentials for it in {} were not accepted (docker login {registry})", file.display())
                }
                None => format!(
                    "no credentials for it in docker's config.json ($DOCKER_CONFIG or ~/.docker): docker login {registry}"
                ),
            },
        };
        match error {
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                unauthorized()
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                if envelope.errors.iter().any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)) {
                    return unauthorized();
                }
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                }) {
                    return RegistryError::NotFound { reference: reference.to_string() };
                }
                let detail = envelope.errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
                RegistryError::Other { registry, detail: shown(&detail) }
            }
            OciDistributionError::ServerError { code: 404, .. }
            | OciDistributionError::ImageManifestNotFoundError(_) => {
                RegistryError::NotFound { reference: reference.to_string() }
            }
            OciDistributionError::ServerError { code, message, .. } => {
                RegistryError::Other { registry, detail: format!("HTTP {code}: {}", shown(&message)) }
            }
            OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
                expected,
                actual,
            }) => RegistryError::DigestMismatch {
                reference: reference.to_string(),
                what: "the manifest",
                expected,
                actual,
            },
            OciDistributionError::RequestError(e) => transport(&registry, &e),
            other => RegistryError::Other { registry, detail: shown(&other.to_string()) },
        }
    }

    async fn authorize(&self) {
        self.client.store_auth_if_needed(&self.registry, &self.auth).await;
    }

    /// The manifest of `reference` and its digest, checked against the
    /// reference's digest (when it has one) and against the bytes.
    ///
    /// # Errors
    ///
    /// [`RegistryError`].
    pub async fn manifest(&self, reference: &OciReference) -> Result<(Vec<u8>, String), RegistryError> {
        self.manifest_as(reference, &[MANIFEST_MEDIA_TYPE]).await
    }

    /// [`Registry::manifest`], accepting `media_types`.
    async fn manifest_as(
        &self,
        reference: &OciReference,
        media_types: &[&str],
    ) -> Result<(Vec<u8>, String), RegistryError> {
        self.authorize().await;
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(&reference.client_reference(), &self.auth, media_types)
            .await
            .map_err(|e| self.error(reference, e))?;
        if bytes.len() > MAX_MANIFEST {
            return Err(RegistryError::NotAPlugin {
                reference: reference.to_string(),
                detail: format!("its manifest is {} bytes, over the limit of {MAX_MANIFEST}", bytes.len()),
            });
        }
        let actual = artifact::digest_of(&bytes);
        for expected in [Some(&digest), reference.digest.as_ref()].into_iter().flatten() {
            if *expected != actual {
                return Err(RegistryError::DigestMismatch {
                    reference: reference.to_string(),
                    what: "the manifest",
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok((bytes.to_vec(), actual))
    }

    /// The blob `layer` of `reference`'s repository, checked against its
    /// size and digest.
    ///
    /// # Errors
    ///
    /// [`RegistryError`].
    pub async fn blob(
        &self,
        reference: &OciReference,
        layer: &Descriptor,
        what: &'static str,
    ) -> Result<Vec<u8>, RegistryError> {
        self.authorize().await;
        let descriptor = oci_client::manifest::OciDescriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: i64::try_from(layer.size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let mut out = Bounded { bytes: Vec::new(), limit: layer.size };
        let pulled = self.client.pull_blob(&reference.client_reference(), &descriptor, &mut out).await;
        let bytes = out.bytes;
        match pulled {
            Ok(()) => {}
            Err(OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError { .. })) => {}
            Err(OciDistributionError::IoError(_)) => {
                return Err(RegistryError::NotAPlugin {
                    reference: reference.to_string(),
                    detail: format!("the registry sent more than the {} bytes its manifest gives {what}", layer.size),
                });
            }
            Err(e) => return Err(self.error(reference, e)),
        }
        let actual = artifact::digest_of(&bytes);
        if actual != layer.digest {
            return Err(RegistryError::DigestMismatch {
                reference: reference.to_string(),
                what,
                expected: layer.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The cosign signatures of the manifest `manifest_digest` (none when
    /// there is no signature tag).
    ///
    /// # Errors
    ///
    /// [`RegistryError`] other than "not found".
    pub async fn signatures(
        &self,
        reference: &OciReference,
        manifest_digest: &str,
    ) -> Result<Vec<Signature>, RegistryError> {
        let tag = reference.at_tag(&cosign::signature_tag(manifest_digest));
        // cosign writes OCI image manifests; older releases wrote Docker's schema 2, the same shape.
        let manifest = match self.manifest_as(&tag, &[MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE]).await {
            Ok((manifest, _)) => manifest,
            Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let layers = cosign::layers(&manifest)
            .map_err(|detail| RegistryError::Other { registry: self.registry.clone(), detail })?;
        let mut signatures = Vec::new();
        for (layer, signature) in layers.into_iter().take(MAX_SIGNATURES) {
            if layer.size > MAX_PAYLOAD {
                continue;
            }
            let payload = self.blob(reference, &layer, "a signature payload").await?;
            signatures.push(Signature { payload: STANDARD.encode(payload), signature });
        }
        Ok(signatures)
    }

    /// Push `bytes` as a blob of `reference`'s repository, unless it is there.
    ///
    /// # Errors
    ///
    /// [`RegistryError`].
    pub async fn push_blob(&self, reference: &OciReference, bytes: &[u8]) -> Result<(), RegistryError> {
        self.authorize().await;
        let image = reference.client_reference();
        let digest = artifact::digest_of(bytes);
        self.client
            .auth(&image, &self.auth, oci_client::RegistryOperation::Push)
            .await
            .map_err(|e| self.error(reference, e))?;
        if self.client.blob_exists(&image, &digest).await.map_err(|e| self.error(reference, e))? {
            return Ok(());
        }
        self.client.push_blob(&image, bytes.to_vec(), &digest).await.map_err(|e| self.error(reference, e))?;
        Ok(())
    }

    /// Push `manifest` under `reference`'s tag (or digest); its digest.
    ///
    /// # Errors
    ///
    /// [`RegistryError`].
    pub async fn push_manifest(&self, reference: &OciReference, manifest: &[u8]) -> Result<String, RegistryError> {
        self.authorize().await;
        let image = reference.client_reference();
        self.client
            .auth(&image, &self.auth, oci_client::RegistryOperation::Push)
            .await
            .map_err(|e| self.error(reference, e))?;
        let content_type = reqwest::header::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
        self.client
            .push_manifest_raw(&image, manifest.to_vec(), content_type)
            .await
            .map_err(|e| self.error(reference, e))?;
        Ok(artifact::digest_of(manifest))
    }
}

/// A registry operation's transport failure, said plainly.
fn transport(registry: &str, error: &reqwest::Error) -> RegistryError {
    let mut chain = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    let all = chain.join(": ");
    if all.contains("InvalidContentType") || all.contains("corrupt message") {
        return RegistryError::NotTls { registry: registry.to_string() };
    }
    if all.contains("certificate") || all.contains("CertificateRequired") || all.contains("UnknownIssuer") {
        return RegistryError::Tls {
            registry: registry.to_string(),
            detail: shown(chain.last().map_or("", String::as_str)),
        };
    }
    RegistryError::Unreachable {
        registry: registry.to_string(),
        detail: shown(chain.last().map_or(&all, String::as_str)),
    }
}

/// A writer into memory that refuses to grow past `limit` bytes.
struct Bounded {
    bytes: Vec<u8>,
    limit: u64,
}

impl AsyncWrite for Bounded {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.bytes.len() as u64 + buf.len() as u64 > self.limit {
            return Poll::Ready(Err(std::io::Error::other("more bytes than the manifest says")));
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Docker's client configuration: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => directories::BaseDirs::new().map(|b| b.home_dir().join(".docker/config.json")),
    }
}

/// The credentials docker's configuration holds for `registry` (`auths`
/// entries keyed by `host[:port]`, optionally with a scheme and path), and
/// the file they came from.
///
/// # Errors
///
/// [`RegistryError::Credentials`] when the file exists but cannot be used.
pub fn docker_credentials(registry: &str) -> Result<(RegistryAuth, Option<PathBuf>), RegistryError> {
    let Some(path) = docker_config_path() else { return Ok((RegistryAuth::Anonymous, None)) };
    credentials_in(&path, registry)
}

fn credentials_in(path: &Path, registry: &str) -> Result<(RegistryAuth, Option<PathBuf>), RegistryError> {
    let bad = |why: String| RegistryError::Credentials(format!("docker's configuration {}: {why}", path.display()));
    let text = match crate::fsutil::read_bounded(path, crate::fsutil::bounds::SMALL) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Ok((RegistryAuth::Anonymous, None)),
        Err(e) => return Err(bad(e.reason())),
    };
    let config: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let host_of = |key: &str| {
        let key = key.split_once("://").map_or(key, |(_, rest)| rest);
        key.split('/').next().unwrap_or_default().to_ascii_lowercase()
    };
    let Some(entry) = config["auths"]
        .as_object()
        .and_then(|auths| auths.iter().find(|(key, _)| host_of(key) == registry).map(|(_, entry)| entry))
    else {
        if config["credHelpers"].get(registry).is_some() || config["credsStore"].is_string() {
            tracing::warn!(
                "docker's configuration {} names a credential helper, which credbroker does not run; \
                 accessing {registry} anonymously (put an `auths` entry for it to log in)",
                path.display()
            );
        }
        return Ok((RegistryAuth::Anonymous, None));
    };
    if let Some(encoded) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let decoded = STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| bad(format!("auths.{registry}.auth is not base64 of user:password")))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad(format!("auths.{registry}.auth is not base64 of user:password")))?;
        return Ok((RegistryAuth::Basic(user.to_string(), password.to_string()), Some(path.to_path_buf())));
    }
    if let (Some(user), Some(password)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Ok((RegistryAuth::Basic(user.to_string(), password.to_string()), Some(path.to_path_buf())));
    }
    if let Some(token) = entry["registrytoken"].as_str() {
        return Ok((RegistryAuth::Bearer(token.to_string()), Some(path.to_path_buf())));
    }
    Ok((RegistryAuth::Anonymous, None))
}

/// What a pull found: the manifest, its digest, the component and its signatures.
pub struct Pulled {
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// Their digest.
    pub manifest_digest: String,
    /// The component.
    pub wasm: Vec<u8>,
    /// Its digest (`sha256:HEX`).
    pub wasm_digest: String,
    /// The cosign signatures of the manifest.
    pub signatures: Vec<Signature>,
}

/// Pull `reference`: its manifest (checked against its digest and the wasm
/// artifact layout), its component (checked against the layer's digest and
/// size) and its signatures.
///
/// # Errors
///
/// [`RegistryError`].
pub fn pull(reference: &OciReference, connection: &Connection) -> Result<Pulled, RegistryError> {
    let registry = Registry::connect(reference, connection)?;
    block_on(async {
        let (manifest, manifest_digest) = registry.manifest(reference).await?;
        let layer = artifact::wasm_layer(&manifest)
            .map_err(|detail| RegistryError::NotAPlugin { reference: reference.to_string(), detail })?;
        let wasm = registry.blob(reference, &layer, "the component").await?;
        let signatures = registry.signatures(reference, &manifest_digest).await?;
        Ok(Pulled { manifest, manifest_digest, wasm_digest: layer.digest, wasm, signatures })
    })
}

/// The digest `reference`'s tag points to now.
///
/// # Errors
///
/// [`RegistryError`].
pub fn resolve(reference: &OciReference, connection: &Connection) -> Result<String, RegistryError> {
    let registry = Registry::connect(reference, connection)?;
    block_on(async { registry.manifest(reference).await.map(|(_, digest)| digest) })
}

/// Push the component `wasm` (whose shape is `shape`) to `reference`; the
/// manifest's digest.
///
/// # Errors
///
/// [`RegistryError`].
pub fn push(
    reference: &OciReference,
    wasm: &[u8],
    shape: &crate::contract::ComponentShape,
    connection: &Connection,
) -> Result<String, RegistryError> {
    let registry = Registry::connect(reference, connection)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let built = artifact::build(wasm, shape, now);
    block_on(async {
        registry.push_blob(reference, wasm).await?;
        registry.push_blob(reference, &built.config).await?;
        registry.push_manifest(reference, &built.manifest).await
    })
}

/// Add `signature` to the signatures of `reference`'s manifest `manifest_digest`
/// (the `sha256-HEX.sig` tag, kept with the signatures it has).
///
/// # Errors
///
/// [`RegistryError`].
pub fn push_signature(
    reference: &OciReference,
    manifest_digest: &str,
    signature: Signature,
    connection: &Connection,
) -> Result<(), RegistryError> {
    let registry = Registry::connect(reference, connection)?;
    block_on(async {
        let mut signatures = registry.signatures(reference, manifest_digest).await?;
        if !signatures.contains(&signature) {
            signatures.push(signature);
        }
        let (config, manifest) = cosign::manifest(&signatures);
        for s in &signatures {
            registry.push_blob(reference, &STANDARD.decode(&s.payload).unwrap_or_default()).await?;
        }
        registry.push_blob(reference, &config).await?;
        registry.push_manifest(&reference.at_tag(&cosign::signature_tag(manifest_digest)), &manifest).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_credentials_are_found_by_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let basic = STANDARD.encode("ada:s3cret");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"https://registry.corp:5000/v1/":{{"auth":"{basic}"}},"other":{{"username":"u","password":"p"}}}}}}"#),
        )
        .unwrap();
        let (auth, from) = credentials_in(&path, "registry.corp:5000").unwrap();
        assert_eq!(auth, RegistryAuth::Basic("ada".into(), "s3cret".into()));
        assert_eq!(from.as_deref(), Some(path.as_path()));
        assert_eq!(credentials_in(&path, "other").unwrap().0, RegistryAuth::Basic("u".into(), "p".into()));
        assert_eq!(credentials_in(&path, "elsewhere").unwrap().0, RegistryAuth::Anonymous);
        assert_eq!(credentials_in(&dir.path().join("missing.json"), "x").unwrap().0, RegistryAuth::Anonymous);
        std::fs::write(&path, r#"{"auths":{"registry.corp":{"auth":"!!"}}}"#).unwrap();
        let error = credentials_in(&path, "registry.corp").unwrap_err().to_string();
        assert!(error.contains("auths.registry.corp.auth is not base64 of user:password"), "{error}");
        assert!(!format!("{:?}", RegistryAuth::Basic("ada".into(), "s3cret".into())).contains("s3cret"));
    }
}
