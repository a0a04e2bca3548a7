//! `credbroker get`: the exec credential plugin kubectl runs.
//!
//! Selects a provider (a profile from the configuration, or a plugin by name or
//! path), answers from the credential cache when it can (without starting the
//! WebAssembly runtime), and otherwise runs the provider in its sandbox under a
//! per-key lock, so parallel kubectl processes log in once.

pub mod cache;
pub mod credential;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use self::cache::{CacheError, CachedCredential, KeyMaterial, TokenCache};
use self::credential::{ApiVersion, ExecCredential, ExecCredentialSpec, ExecCredentialStatus, ExecInfoError, KIND};
use crate::bindings::types::{ClusterInfo, Credential, CredentialRequest, CredentialSecret, Setting};
use crate::capabilities::{StateStore, StdioTerminal};
use crate::config::{ClientConfig, ConfigError, PluginSpec};
use crate::dirs::Dirs;
use crate::plugin::PluginError;
use crate::plugin::prepare::PrepareError;
use crate::runtime::{Allocation, LoadError, RunError, Runtime, RuntimeOptions, World};
use crate::storage::keyring::kernel::KernelCache;
use crate::storage::{KeyringHandle, Selector, Storage, StorageError, StorageKind};

/// Which provider to run.
#[derive(Debug, Clone)]
pub enum Selection {
    /// `--provider NAME`: a profile, else a bundled or installed plugin.
    Provider(String),
    /// `--plugin PATH`: a `.wasm` file.
    Plugin(PathBuf),
}

/// Everything `credbroker get` was asked.
#[derive(Debug, Clone)]
pub struct GetRequest {
    /// The provider.
    pub selection: Selection,
    /// `--set KEY=VALUE`, in order (later wins).
    pub set: Vec<(String, String)>,
    /// `--config FILE`; `None` uses the default location, where the file is optional.
    pub config: Option<PathBuf>,
    /// `--api-version`, used when KUBERNETES_EXEC_INFO is absent.
    pub api_version: Option<ApiVersion>,
    /// The content of KUBERNETES_EXEC_INFO.
    pub exec_info: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--storage`; `None` takes the profile's (default `auto`).
    pub storage: Option<StorageKind>,
    /// `--allow-http ORIGIN`: extra HTTP grants.
    pub allow_http: Vec<String>,
    /// `--allow-file PATH`: extra file grants.
    pub allow_file: Vec<PathBuf>,
    /// Whether stdin is a terminal (decides interactivity without exec info).
    pub stdin_is_terminal: bool,
}

/// Why `credbroker get` printed no credential.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The configuration file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No profile or plugin has the requested name.
    #[error("unknown provider `{name}`; profiles: {profiles}; plugins: {plugins}")]
    UnknownProvider {
        /// The name asked for.
        name: String,
        /// Profiles in the configuration.
        profiles: String,
        /// Bundled and installed plugins.
        plugins: String,
    },
    /// The plugin cannot be located, pinned, trusted, configured or sandboxed.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// KUBERNETES_EXEC_INFO is unusable.
    #[error(transparent)]
    ExecInfo(#[from] ExecInfoError),
    /// The plugin cannot be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The plugin failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The cache is unusable.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The storage asked for cannot be used, or the async runtime cannot start.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The user's directories cannot be determined.
    #[error("{0}")]
    Dirs(String),
    /// The keyring failed while removing items.
    #[error(transparent)]
    Keyring(#[from] crate::storage::KeyringError),
    /// Plugin state cannot be removed.
    #[error("plugin state: {0}")]
    State(String),
}

/// The profile that applies: from the configuration, or made up for a plain
/// plugin name or path.
struct Resolved {
    name: String,
    spec: PluginSpec,
    margin: u64,
    ttl: Option<u64>,
    share_across_clusters: bool,
    storage: StorageKind,
}

fn resolve_profile(request: &GetRequest, config: &ClientConfig, dirs: &Dirs) -> Result<Resolved, GetError> {
    let plain = |name: String, plugin: String| Resolved {
        name,
        spec: PluginSpec { plugin, ..PluginSpec::default() },
        margin: 60,
        ttl: None,
        share_across_clusters: false,
        storage: StorageKind::default(),
    };
    let mut resolved = match &request.selection {
        Selection::Plugin(path) => plain(path.display().to_string(), path.display().to_string()),
        Selection::Provider(name) => match config.profiles.get(name) {
            Some(profile) => Resolved {
                name: name.clone(),
                spec: profile.spec(),
                margin: profile.cache_margin_seconds,
                ttl: profile.cache_ttl_seconds,
                share_across_clusters: profile.share_cache_across_clusters,
                storage: profile.storage.unwrap_or_default(),
            },
            None if crate::plugin::is_path(name) => {
                return Err(GetError::UnknownProvider {
                    name: crate::boundary::text::name(name).into_owned(),
                    profiles: list_or_none(config.profiles.keys().cloned().collect()),
                    plugins: list_or_none(crate::plugin::available(
                        std::slice::from_ref(&dirs.plugins),
                        Some(World::Provider),
                    )),
                });
            }
            None => plain(name.clone(), name.clone()),
        },
    };
    for (key, value) in &request.set {
        resolved.spec.settings.insert(key.clone(), value.clone());
    }
    resolved.spec.grants.extend_list("http", request.allow_http.iter().cloned());
    resolved.spec.grants.extend_list("files", request.allow_file.iter().map(|p| p.display().to_string()));
    Ok(resolved)
}

fn list_or_none(items: Vec<String>) -> String {
    if items.is_empty() { "none".to_string() } else { items.join(", ") }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Run `credbroker get`: the ExecCredential to print.
///
/// # Errors
///
/// [`GetError`] with a message for the user; nothing must be printed on stdout then.
pub fn get(request: &GetRequest) -> Result<ExecCredential, GetError> {
    let dirs = Dirs::of_user().map_err(GetError::Dirs)?;
    let (version, spec) = match &request.exec_info {
        Some(info) if !info.trim().is_empty() => credential::parse_exec_info(info)?,
        _ => (
            request.api_version.unwrap_or(ApiVersion::V1Beta1),
            ExecCredentialSpec { cluster: None, interactive: request.stdin_is_terminal },
        ),
    };
    let config = match &request.config {
        Some(path) => ClientConfig::load(path, false)?,
        None => ClientConfig::load(&dirs.config_file, true)?,
    };
    let profile = resolve_profile(request, &config, &dirs)?;
    // Located, pinned, trusted (before the cache: a credential a now-untrusted
    // plugin produced is not served) and its settings resolved; no component read.
    let verified = dirs.plugin_sources().verify(&profile.spec, &config.plugins).map_err(|e| match e {
        PrepareError::Plugin(PluginError::Unknown { name, .. })
            if matches!(request.selection, Selection::Provider(_)) =>
        {
            GetError::UnknownProvider {
                name,
                profiles: list_or_none(config.profiles.keys().cloned().collect()),
                plugins: list_or_none(crate::plugin::available(
                    std::slice::from_ref(&dirs.plugins),
                    Some(World::Provider),
                )),
            }
        }
        other => GetError::Prepare(other),
    })?;
    let plugin = &verified.plugin;
    let settings = &verified.settings;

    let server = spec.cluster.as_ref().map(|c| c.server.as_str());
    let key = TokenCache::key(&KeyMaterial {
        profile: &profile.name,
        plugin_sha256: &plugin.sha256,
        settings: settings.iter().collect(),
        server: if profile.share_across_clusters { None } else { server },
    });
    let respond = |entry: &CachedCredential| ExecCredential {
        kind: KIND.to_string(),
        api_version: version.as_str().to_string(),
        spec: ExecCredentialSpec { cluster: None, interactive: spec.interactive },
        status: Some(entry.status.clone()),
    };
    let storage_kind = request.storage.unwrap_or(profile.storage);
    // The fastest path: a credential the keyring keeps, copied in the kernel
    // keyring, is served without connecting to the keyring at all.
    if !request.no_cache
        && matches!(storage_kind, StorageKind::Keyring | StorageKind::Auto)
        && let Some(hit) = TokenCache::read_kernel(&dirs.credentials(), &key, now_unix(), profile.margin)
    {
        tracing::debug!("credential from the kernel keyring, valid until {}", credential::rfc3339(hit.expires_at));
        return Ok(respond(&hit));
    }
    // A cache hit reads this item first: the keyring looks it up as it connects.
    let first_read = (!request.no_cache).then(|| key.item());
    let storage = Storage::open(storage_kind, &dirs.cache, first_read.as_ref())?;
    let keyring = match &storage {
        Storage::Keyring(handle) => Some(handle.clone()),
        Storage::Files | Storage::Nothing => None,
    };
    let cache = if request.no_cache || matches!(storage, Storage::Nothing) {
        None
    } else {
        match TokenCache::open(dirs.credentials(), keyring.clone()) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!("{e}; continuing without the credential cache");
                None
            }
        }
    };
    // The fast path: a cache hit never starts the WebAssembly runtime.
    if let Some(cache) = &cache
        && let Some(hit) = cache.read(&key, now_unix(), profile.margin)
    {
        tracing::debug!("credential from cache, valid until {}", credential::rfc3339(hit.expires_at));
        return Ok(respond(&hit));
    }

    let settings_list: Vec<Setting> =
        settings.iter().map(|(k, v)| Setting { key: k.to_string(), value: v.to_string() }).collect();
    let state = match &storage {
        Storage::Keyring(handle) => {
            StateStore::keyring_for(handle.keyring().clone(), &dirs.state, &profile.name, &plugin.name)
        }
        Storage::Files => StateStore::file_for(&dirs.state, &profile.name, &plugin.name),
        Storage::Nothing => StateStore::memory(),
    };
    let sandbox = verified.sandbox(Arc::new(StdioTerminal), state)?;
    let _lock = match &cache {
        // Wait for a parallel run as long as it may take to finish.
        Some(cache) => Some(cache.lock(&key, sandbox.limits.timeout() + Duration::from_secs(5))?),
        None => None,
    };
    if let Some(cache) = &cache
        && let Some(hit) = cache.read(&key, now_unix(), profile.margin)
    {
        tracing::debug!("credential from cache after waiting for a parallel run");
        return Ok(respond(&hit));
    }

    let credential_request = CredentialRequest {
        settings: settings_list,
        interactive: spec.interactive,
        cluster: match &spec.cluster {
            Some(cluster) => Some(ClusterInfo {
                server: cluster.server.clone(),
                certificate_authority_data: cluster.ca_bytes().map_err(|_| ExecInfoError::BadCaData)?,
                tls_server_name: cluster.tls_server_name.clone(),
                insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
                proxy_url: cluster.proxy_url.clone(),
                config: cluster.config.as_ref().map(|c| c.to_string()),
            }),
            None => None,
        },
    };
    let runtime =
        Runtime::new(RuntimeOptions { allocation: Allocation::OnDemand, artifact_dir: Some(dirs.artifacts()) })?;
    let loaded = verified.load(&runtime, &[World::Provider])?;
    // The keyring's connection lives on its runtime: the plugin runs there too.
    let tokio = match &keyring {
        Some(handle) => Arc::clone(handle.runtime()),
        None => Arc::new(crate::storage::new_runtime()?),
    };
    let credential = tokio.block_on(loaded.get_credential(runtime.engine(), &sandbox, credential_request))?;
    // The process ends right after this: leave the engine, the compiled code
    // and the async runtime to the kernel instead of unmapping them one by one
    // (a measurable share of every kubectl command).
    std::mem::forget(loaded);
    std::mem::forget(runtime);
    std::mem::forget(tokio);
    let now = now_unix();
    let status = check_credential(&credential, now)
        .map_err(|detail| RunError::BadResult { plugin: plugin.name.clone(), detail })?;
    let cache_until = credential.expires_at.or(profile.ttl.map(|ttl| now.saturating_add_unsigned(ttl)));
    let entry = CachedCredential {
        version: 1,
        expires_at: cache_until.unwrap_or(now),
        provider_expiry: credential.expires_at.is_some(),
        status,
    };
    if let (Some(cache), Some(_)) = (&cache, cache_until)
        && let Err(e) = cache.write(&key, &entry, now, profile.margin)
    {
        tracing::warn!("{e}; the credential is not cached");
    }
    Ok(respond(&entry))
}

/// Longest a credential may claim to be valid; beyond is a plugin bug.
const MAX_LIFETIME_SECONDS: i64 = 10 * 366 * 24 * 3600;

/// Turn a provider's credential into ExecCredential status, refusing what
/// client-go would choke on or what cannot be right.
fn check_credential(credential: &Credential, now: i64) -> Result<ExecCredentialStatus, String> {
    let mut status = ExecCredentialStatus::default();
    match &credential.secret {
        CredentialSecret::Token(token) => {
            if token.is_empty() {
                return Err("an empty token".into());
            }
            if token.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err("a token with whitespace or control characters, which cannot go into an HTTP header".into());
            }
            status.token = Some(token.clone());
        }
        CredentialSecret::ClientCertificate(cert) => {
            check_client_certificate(&cert.certificate_pem, &cert.private_key_pem)?;
            status.client_certificate_data = Some(cert.certificate_pem.clone());
            status.client_key_data = Some(cert.private_key_pem.clone());
        }
    }
    if let Some(expires_at) = credential.expires_at {
        if expires_at <= now {
            return Err(format!("a credential that already expired at {}", credential::rfc3339(expires_at)));
        }
        if expires_at - now > MAX_LIFETIME_SECONDS {
            return Err(format!("an absurd expiry ({expires_at} seconds since 1970)"));
        }
        status.expiration_timestamp = Some(credential::rfc3339(expires_at));
    }
    Ok(status)
}

/// Refuse a client certificate kubectl could not use: PEM that holds no
/// X.509 certificate (garbage DER parses as PEM), a key rustls cannot load,
/// or a key that is not the certificate's.
fn check_client_certificate(certificate_pem: &str, private_key_pem: &str) -> Result<(), String> {
    let mut reader = certificate_pem.as_bytes();
    let certs = match rustls_pemfile::certs(&mut reader).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => certs,
        _ => return Err("a client certificate that is not PEM".into()),
    };
    let mut reader = private_key_pem.as_bytes();
    let Ok(Some(key)) = rustls_pemfile::private_key(&mut reader) else {
        return Err("a client key that is not a PEM private key".into());
    };
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("a client key that cannot sign TLS handshakes ({e})"))?;
    rustls::sign::CertifiedKey::new(certs, signing).keys_match().map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "a client key that does not belong to the certificate".to_string()
        }
        other => format!("a client certificate that is not a valid X.509 certificate ({other})"),
    })
}

/// What [`clear_cache`] or [`forget`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Cached credentials kept in files.
    pub credential_files: usize,
    /// Cached credentials kept in the keyring.
    pub credential_items: usize,
    /// Plugin state (refresh tokens) kept in files.
    pub state_files: usize,
    /// Plugin state kept in the keyring.
    pub state_items: usize,
    /// Copies of keyring-kept credentials in the kernel keyring (Linux).
    pub kernel_keys: usize,
    /// Why the keyring was not looked in, when it was not.
    pub keyring_unchecked: Option<String>,
}

/// Remove cached credentials, all or those of one provider, from the files
/// and the keyring. Plugin state (refresh tokens) stays: see [`forget`].
///
/// # Errors
///
/// [`GetError`] when the cache directory is unusable or the keyring fails.
pub fn clear_cache(provider: Option<&str>) -> Result<Removed, GetError> {
    let dirs = Dirs::of_user().map_err(GetError::Dirs)?;
    let mut removed = Removed::default();
    if dirs.credentials().exists() {
        removed.credential_files = TokenCache::open(dirs.credentials(), None)?.clear(provider)?;
    }
    // First, and whether or not the keyring answers now: a copy left there
    // would still be served until it expires.
    match KernelCache::new(&dirs.credentials()).delete_all(provider) {
        Ok(count) => removed.kernel_keys = count,
        Err(e) => tracing::debug!("credential cache: {e}; no copies removed from the kernel keyring"),
    }
    with_keyring(&mut removed, |handle, removed| {
        let items = handle.block_on(handle.keyring().delete_all(Selector {
            kind: Some("credential"),
            profile: provider,
            key: None,
        }))?;
        removed.credential_items = items.get("credential").copied().unwrap_or(0);
        Ok(())
    })?;
    Ok(removed)
}

/// Log out: remove the cached credentials and the plugin state (refresh
/// tokens) of one profile, or of all, from every storage. Each state file is
/// removed under its lock, so a run of the profile that is using it finishes
/// first and cannot write it back afterwards.
///
/// # Errors
///
/// [`GetError`] when a directory is unusable, a lock is held too long, or
/// the keyring fails.
pub fn forget(provider: Option<&str>) -> Result<Removed, GetError> {
    let mut removed = clear_cache(provider)?;
    let dirs = Dirs::of_user().map_err(GetError::Dirs)?;
    let keyring = match KeyringHandle::connect(None) {
        Ok(handle) => Some(handle),
        Err(StorageError::Keyring(e)) => {
            removed.keyring_unchecked.get_or_insert(e.to_string());
            None
        }
        Err(other) => return Err(other.into()),
    };
    // Every store that was ever used has a lock file (state kept in the
    // keyring too), and a file-kept one its `.json`.
    let mut names = std::collections::BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(&dirs.state) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if crate::capabilities::state::is_state_file_of(&file, provider)
                && let Some(stem) = file.strip_suffix(".json").or_else(|| file.strip_suffix(".lock"))
            {
                names.insert(stem.to_string());
            }
        }
    }
    for name in &names {
        let lock = dirs.state.join(format!("{name}.lock"));
        let _held =
            crate::fsutil::FileLock::acquire(&lock, LOGOUT_LOCK_WAIT).map_err(|e| GetError::State(e.to_string()))?;
        let path = dirs.state.join(format!("{name}.json"));
        match std::fs::remove_file(&path) {
            Ok(()) => removed.state_files += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(GetError::State(format!("cannot remove `{}`: {e}", path.display()))),
        }
        if let Some(handle) = &keyring {
            let selector = Selector { kind: Some("state"), profile: None, key: Some(name) };
            let items = handle.block_on(handle.keyring().delete_all(selector))?;
            removed.state_items += items.get("state").copied().unwrap_or(0);
        }
    }
    // Items without a lock file here (another machine's home, a removed file).
    if let Some(handle) = &keyring {
        let selector = Selector { kind: Some("state"), profile: provider, key: None };
        let items = handle.block_on(handle.keyring().delete_all(selector))?;
        removed.state_items += items.get("state").copied().unwrap_or(0);
    }
    Ok(removed)
}

/// How long `logout` waits for a run that holds a profile's state.
const LOGOUT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Run `work` with the keyring if one answers; otherwise note why not.
fn with_keyring(
    removed: &mut Removed,
    work: impl FnOnce(&KeyringHandle, &mut Removed) -> Result<(), crate::storage::KeyringError>,
) -> Result<(), GetError> {
    if removed.keyring_unchecked.is_some() {
        return Ok(());
    }
    match KeyringHandle::connect(None) {
        Ok(handle) => Ok(work(&handle, removed)?),
        Err(StorageError::Keyring(e)) => {
            removed.keyring_unchecked = Some(e.to_string());
            Ok(())
        }
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::ClientCertificate;

    #[test]
    fn credentials_are_checked() {
        let token =
            |t: &str, exp: Option<i64>| Credential { secret: CredentialSecret::Token(t.into()), expires_at: exp };
        assert!(check_credential(&token("abc", None), 100).is_ok());
        assert_eq!(
            check_credential(&token("abc", Some(160)), 100).unwrap().expiration_timestamp.as_deref(),
            Some("1970-01-01T00:02:40Z")
        );
        assert!(check_credential(&token("", None), 100).is_err());
        assert!(check_credential(&token("a\r\nX-Evil: 1", None), 100).is_err());
        assert!(check_credential(&token("abc", Some(50)), 100).unwrap_err().contains("already expired"));
        assert!(check_credential(&token("abc", Some(i64::MAX)), 100).unwrap_err().contains("absurd"));
        let cert = Credential {
            secret: CredentialSecret::ClientCertificate(ClientCertificate {
                certificate_pem: "not pem".into(),
                private_key_pem: "not pem".into(),
            }),
            expires_at: None,
        };
        assert!(check_credential(&cert, 100).unwrap_err().contains("not PEM"));
    }

    #[test]
    fn client_certificates_must_be_x509_with_their_own_key() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["alice".into()]).unwrap().self_signed(&key).unwrap();
        assert_eq!(check_client_certificate(&cert.pem(), &key.serialize_pem()), Ok(()));
        let other = rcgen::KeyPair::generate().unwrap();
        let mismatch = check_client_certificate(&cert.pem(), &other.serialize_pem()).unwrap_err();
        assert!(mismatch.contains("does not belong to the certificate"), "{mismatch}");
        let garbage = "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZSBkZXI=\n-----END CERTIFICATE-----\n";
        let invalid = check_client_certificate(garbage, &key.serialize_pem()).unwrap_err();
        assert!(invalid.contains("not a valid X.509 certificate"), "{invalid}");
    }
}
