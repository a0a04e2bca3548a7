//! The configuration file of `credbroker serve`.
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:8443"
//! tls-cert-file = "/etc/credbroker/tls/tls.crt"
//! tls-key-file = "/etc/credbroker/tls/tls.key"
//! client-ca-file = "/etc/credbroker/tls/apiserver-ca.crt"   # makes mTLS mandatory
//!
//! [[validators]]
//! name = "tokens"
//! plugin = "token-file"
//! token-prefix = "tf-"                 # only tokens starting with this go here
//! audiences = ["https://kubernetes.default.svc"]
//! [validators.settings]
//! path = "/etc/credbroker/tokens.csv"
//! [validators.grants]
//! files = ["/etc/credbroker/tokens.csv"]
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::capabilities::Grants;
use crate::config::{ConfigError, PluginSpec, check_name, check_range, relative_to};
use crate::limits::Limits;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerConfig {
    /// The listener.
    #[serde(default)]
    pub server: ListenerConfig,
    /// The response cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Password logins and the tokens issued for them.
    #[serde(default)]
    pub login: Option<super::login::LoginConfig>,
    /// Which plugin files may run: signatures.
    #[serde(default)]
    pub plugins: crate::signing::TrustPolicy,
    /// Validators, tried in order.
    #[serde(default)]
    pub validators: Vec<ValidatorConfig>,
}

/// `[server]`: where and how to listen. Changes need a restart.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A second, plain-HTTP address serving only /healthz, /readyz and
    /// /metrics, for kubelet probes and Prometheus (which hold no client
    /// certificate). Off by default.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
    /// PEM certificate chain (reloaded when it changes).
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (reloaded when it changes).
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle for client certificates; when set, every client must
    /// present a certificate it signed.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Serve plain HTTP. Only for local testing.
    #[serde(default)]
    pub insecure_plain_http: bool,
    /// Reviews running plugins at once; more wait, then get 429.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_reviews: u32,
    /// How long a review (or login) waits for a plugin slot before the answer
    /// is 429, in milliseconds.
    #[serde(default = "default_queue_timeout")]
    pub review_queue_timeout_ms: u64,
    /// Open connections with a verified client certificate (all connections
    /// when there is no client CA); more wait for one to close.
    #[serde(default = "default_connections")]
    pub max_connections: u32,
    /// Open TLS connections without a client certificate (password logins);
    /// when full, the oldest idle one is closed for a new one.
    #[serde(default = "default_login_connections")]
    pub max_login_connections: u32,
    /// TLS handshakes in progress; when full, the oldest handshake of the
    /// source address with the most of them is cut off for a new one.
    #[serde(default = "default_handshakes")]
    pub max_handshakes: u32,
    /// Open connections on `health-listen`; when full, the oldest idle one is
    /// closed for a new one.
    #[serde(default = "default_health_connections")]
    pub max_health_connections: u32,
    /// Time allowed for a TLS handshake, in milliseconds.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_ms: u64,
    /// Time allowed for a request's head (line and headers), from the
    /// connection's start or the end of the previous request; a connection
    /// idle this long is closed. In milliseconds.
    #[serde(default = "default_request_head_timeout")]
    pub request_head_timeout_ms: u64,
    /// Time allowed for a request's whole body, in milliseconds.
    #[serde(default = "default_request_body_timeout")]
    pub request_body_timeout_ms: u64,
    /// Largest linear memory any validator may get, in MiB (the size of each
    /// slot of the instance pool).
    #[serde(default = "default_pool_memory")]
    pub max_plugin_memory_mib: u64,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_concurrency() -> u32 {
    64
}
fn default_connections() -> u32 {
    1024
}
fn default_queue_timeout() -> u64 {
    // As long as reviews waited before there were shares: on a saturated
    // machine a fair queue of a few seconds is still an answer, not a 429.
    5000
}
fn default_login_connections() -> u32 {
    128
}
fn default_handshakes() -> u32 {
    256
}
fn default_health_connections() -> u32 {
    32
}
fn default_handshake_timeout() -> u64 {
    3000
}
fn default_request_head_timeout() -> u64 {
    5000
}
fn default_request_body_timeout() -> u64 {
    10000
}
fn default_pool_memory() -> u64 {
    128
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            health_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
            client_ca_file: None,
            insecure_plain_http: false,
            max_concurrent_reviews: default_concurrency(),
            review_queue_timeout_ms: default_queue_timeout(),
            max_connections: default_connections(),
            max_login_connections: default_login_connections(),
            max_handshakes: default_handshakes(),
            max_health_connections: default_health_connections(),
            handshake_timeout_ms: default_handshake_timeout(),
            request_head_timeout_ms: default_request_head_timeout(),
            request_body_timeout_ms: default_request_body_timeout(),
            max_plugin_memory_mib: default_pool_memory(),
        }
    }
}

/// `[cache]`: the response cache.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CacheConfig {
    /// How long an authenticated answer is reused, in seconds (0: never).
    #[serde(default = "default_positive_ttl")]
    pub positive_ttl_seconds: u64,
    /// How long a denial is reused, in seconds (0: never).
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl_seconds: u64,
    /// Most answers kept.
    #[serde(default = "default_cache_entries")]
    pub max_entries: usize,
    /// Most memory the kept answers may take, in bytes.
    #[serde(default = "default_cache_bytes")]
    pub max_bytes: u64,
}

fn default_cache_bytes() -> u64 {
    super::cache::DEFAULT_MAX_BYTES as u64
}

fn default_positive_ttl() -> u64 {
    30
}
fn default_negative_ttl() -> u64 {
    5
}
fn default_cache_entries() -> usize {
    10_000
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            positive_ttl_seconds: default_positive_ttl(),
            negative_ttl_seconds: default_negative_ttl(),
            max_entries: default_cache_entries(),
            max_bytes: default_cache_bytes(),
        }
    }
}

/// One `[[validators]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ValidatorConfig {
    /// A name for logs and metrics.
    pub name: String,
    /// A bundled or installed plugin name, a path to a `.wasm`, or an OCI reference.
    pub plugin: String,
    /// The plugin's sha256 must be this.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Only tokens starting with this prefix are sent to this validator.
    #[serde(default)]
    pub token_prefix: Option<String>,
    /// Audiences this validator's tokens are valid for.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// This validator's share of `[server] max-concurrent-reviews`: its
    /// reviews beyond it wait in its own queue (default: an equal share, at
    /// least 4).
    #[serde(default)]
    pub max_concurrent_reviews: Option<u32>,
    /// Settings handed to the plugin; values may be `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Capabilities granted to the plugin.
    #[serde(default)]
    pub grants: Grants,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Reserved identities it may assert, and prefixes it is confined to.
    #[serde(default)]
    pub identities: super::identity::IdentityGrants,
}

impl ValidatorConfig {
    /// The plugin and its sandbox.
    pub fn spec(&self) -> PluginSpec {
        PluginSpec {
            plugin: self.plugin.clone(),
            sha256: self.sha256.clone(),
            settings: self.settings.clone(),
            grants: self.grants.clone(),
            limits: self.limits.clone(),
        }
    }
}

/// Command-line flags of `credbroker serve` that take the place of `[server]`
/// keys: `--listen` and `--insecure-plain-http`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerOverrides {
    /// Replaces `listen`.
    pub listen: Option<SocketAddr>,
    /// Sets `insecure-plain-http = true` (it never turns it off).
    pub insecure_plain_http: bool,
}

impl ListenerOverrides {
    /// The one place flags override `[server]`.
    fn apply(&self, server: &mut ListenerConfig) {
        server.insecure_plain_http |= self.insecure_plain_http;
        if let Some(addr) = self.listen {
            server.listen = addr;
        }
    }
}

impl ServerConfig {
    /// Load and check `path`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the file cannot be read, does not parse, or makes no sense.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, &ListenerOverrides::default())
    }

    /// Load `path`, apply `overrides` to `[server]`, and check the result: a
    /// flag counts as the key it stands for (`--insecure-plain-http` in place
    /// of the TLS files).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the file cannot be read, does not parse, or makes no sense.
    pub fn load_with(path: &Path, overrides: &ListenerOverrides) -> Result<Self, ConfigError> {
        let text = crate::fsutil::read_text_bounded(path, crate::fsutil::bounds::CONFIG)
            .map_err(|error| ConfigError::Unreadable { path: path.to_path_buf(), error })?;
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        let mut config: Self = toml::from_str(&text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
        overrides.apply(&mut config.server);
        let base = path.parent().unwrap_or(Path::new("."));
        if config.validators.is_empty() {
            return Err(invalid("no [[validators]]: nothing could ever authenticate".into()));
        }
        let mut names = std::collections::HashSet::new();
        for validator in &mut config.validators {
            check_name("validator", &validator.name).map_err(&invalid)?;
            if !names.insert(validator.name.clone()) {
                return Err(invalid(format!("two validators are named `{}`", validator.name)));
            }
            validator.limits.validate().map_err(|e| invalid(format!("validator `{}`: {e}", validator.name)))?;
            if validator.limits.memory_mib > config.server.max_plugin_memory_mib {
                return Err(invalid(format!(
                    "validator `{}`: memory-mib {} is over the server's max-plugin-memory-mib {}",
                    validator.name, validator.limits.memory_mib, config.server.max_plugin_memory_mib
                )));
            }
            if let Some(share) = validator.max_concurrent_reviews {
                let total = config.server.max_concurrent_reviews;
                if !(1..=total).contains(&share) {
                    return Err(invalid(format!(
                        "validator `{}`: max-concurrent-reviews is {share}; it must be 1 to the server's \
                         max-concurrent-reviews ({total})",
                        validator.name
                    )));
                }
            }
            validator.plugin = relative_to(base, &validator.plugin);
        }
        config.plugins.resolve_paths(base);
        config.plugins.validate().map_err(&invalid)?;
        if let Some(login) = &mut config.login {
            for file in std::iter::once(&mut login.signing_key_file).chain(login.verification_key_files.iter_mut()) {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
            [
                ("token-lifetime-seconds", login.token_lifetime_seconds, 1, 86_400),
                ("recheck-seconds", login.recheck_seconds, 0, 86_400),
                ("max-failures-per-user", u64::from(login.max_failures_per_user), 1, 1_000_000),
                ("max-failures-per-client", u64::from(login.max_failures_per_client), 1, 1_000_000),
                ("max-failures-per-network", u64::from(login.max_failures_per_network), 1, 1_000_000),
                ("failure-window-seconds", login.failure_window_seconds, 1, 86_400),
            ]
            .into_iter()
            .try_for_each(|(name, value, min, max)| check_range(name, value, min, max))
            .map_err(|e| invalid(format!("[login] {e}")))?;
        }
        let cache = &config.cache;
        [
            ("positive-ttl-seconds", cache.positive_ttl_seconds, 0, 86_400),
            ("negative-ttl-seconds", cache.negative_ttl_seconds, 0, 86_400),
            ("max-entries", cache.max_entries as u64, 0, 10_000_000),
            ("max-bytes", cache.max_bytes, 0, 16 * 1024 * 1024 * 1024),
        ]
        .into_iter()
        .try_for_each(|(name, value, min, max)| check_range(name, value, min, max))
        .map_err(|e| invalid(format!("[cache] {e}")))?;
        let server = &mut config.server;
        for file in
            [&mut server.tls_cert_file, &mut server.tls_key_file, &mut server.client_ca_file].into_iter().flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        if !server.insecure_plain_http && (server.tls_cert_file.is_none() || server.tls_key_file.is_none()) {
            return Err(invalid(
                "[server] needs tls-cert-file and tls-key-file (or insecure-plain-http = true, or \
                 --insecure-plain-http, for local testing)"
                    .into(),
            ));
        }
        [
            ("max-concurrent-reviews", u64::from(server.max_concurrent_reviews), 1, 10_000),
            ("max-connections", u64::from(server.max_connections), 1, 1_000_000),
            ("max-plugin-memory-mib", server.max_plugin_memory_mib, 1, 4096),
            ("review-queue-timeout-ms", server.review_queue_timeout_ms, 1, 60_000),
            ("max-login-connections", u64::from(server.max_login_connections), 1, 1_000_000),
            ("max-handshakes", u64::from(server.max_handshakes), 1, 1_000_000),
            ("max-health-connections", u64::from(server.max_health_connections), 1, 4096),
            ("handshake-timeout-ms", server.handshake_timeout_ms, 100, 60_000),
            ("request-head-timeout-ms", server.request_head_timeout_ms, 100, 300_000),
            ("request-body-timeout-ms", server.request_body_timeout_ms, 100, 300_000),
        ]
        .into_iter()
        .try_for_each(|(name, value, min, max)| check_range(name, value, min, max))
        .map_err(|e| invalid(format!("[server] {e}")))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ServerConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, text).unwrap();
        ServerConfig::load(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_config_parses() {
        let config = load(
            r#"
[server]
listen = "127.0.0.1:9443"
tls-cert-file = "tls.crt"
tls-key-file = "/abs/tls.key"
[cache]
positive-ttl-seconds = 60
[[validators]]
name = "a"
plugin = "token-file"
token-prefix = "a-"
audiences = ["x"]
[validators.settings]
path = "/tokens.csv"
[validators.limits]
cpu-ms = 50
"#,
        )
        .unwrap();
        assert_eq!(config.server.listen.port(), 9443);
        assert!(config.server.tls_cert_file.unwrap().is_absolute());
        assert_eq!(config.cache.positive_ttl_seconds, 60);
        assert_eq!(config.cache.negative_ttl_seconds, 5);
        assert_eq!(config.validators[0].limits.cpu_ms, 50);
        assert_eq!(config.validators[0].limits.timeout_ms, Limits::default().timeout_ms);
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(load("[server]\ninsecure-plain-http = true\n").unwrap_err().contains("no [[validators]]"));
        let no_tls = load("[[validators]]\nname = \"a\"\nplugin = \"x\"\n").unwrap_err();
        assert!(no_tls.contains("needs tls-cert-file"), "{no_tls}");
        let twice = load(
            "[server]\ninsecure-plain-http = true\n[[validators]]\nname = \"a\"\nplugin = \"x\"\n[[validators]]\nname = \"a\"\nplugin = \"y\"\n",
        )
        .unwrap_err();
        assert!(twice.contains("two validators are named `a`"), "{twice}");
        let typo = load("[server]\ninsecure-plain-http = true\nlisten-addr = \"x\"\n").unwrap_err();
        assert!(typo.contains("unknown field `listen-addr`"), "{typo}");
        let plain = "[server]\ninsecure-plain-http = true\n";
        let one = "[[validators]]\nname = \"a\"\nplugin = \"x\"\n";
        let ttl = load(&format!("{plain}[cache]\npositive-ttl-seconds = 9300000000000000000\n{one}")).unwrap_err();
        assert!(ttl.contains("[cache] `positive-ttl-seconds` must be between 0 and 86400"), "{ttl}");
        let tables = load(&format!("{plain}{one}[validators.limits]\ntable-elements = 4000000000\n")).unwrap_err();
        assert!(tables.contains("limit `table-elements` must be between 1 and 1000000"), "{tables}");
        let name = load(&format!("{plain}[[validators]]\nname = \"evil\\nINFO fake\"\nplugin = \"x\"\n")).unwrap_err();
        assert!(name.contains("validator name `evil\\nINFO fake` must be"), "{name}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("serve.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let error = ServerConfig::load(&fifo).unwrap_err().to_string();
        assert!(error.ends_with("it is a FIFO, not a regular file"), "{error}");
        for (setting, error) in [
            ("max-connections = 0", "[server] `max-connections` must be between 1 and 1000000, not 0"),
            ("max-handshakes = 2000000", "[server] `max-handshakes` must be between 1 and 1000000, not 2000000"),
            ("handshake-timeout-ms = 10", "[server] `handshake-timeout-ms` must be between 100 and 60000, not 10"),
            ("request-body-timeout-ms = 0", "[server] `request-body-timeout-ms` must be between 100 and 300000, not 0"),
        ] {
            let got = load(&format!("{plain}{setting}\n{one}")).unwrap_err();
            assert!(got.ends_with(error), "{setting}: {got}");
        }
        let share = load(&format!("{plain}max-concurrent-reviews = 8\n{one}max-concurrent-reviews = 9\n")).unwrap_err();
        assert!(share.contains("validator `a`: max-concurrent-reviews is 9; it must be 1 to the server's"), "{share}");
    }

    #[test]
    fn flags_stand_for_their_keys_before_the_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1\"\n[[validators]]\nname = \"a\"\nplugin = \"x\"\n")
            .unwrap();
        let listen = "127.0.0.1:9443".parse().ok();
        let plain = ListenerOverrides { listen, insecure_plain_http: true };
        let config = ServerConfig::load_with(&path, &plain).unwrap();
        assert!(config.server.insecure_plain_http);
        assert_eq!(config.server.listen, "127.0.0.1:9443".parse().unwrap());
        let error = ServerConfig::load_with(&path, &ListenerOverrides { listen, ..Default::default() }).unwrap_err();
        assert!(error.to_string().contains("--insecure-plain-http"), "{error}");
    }
}
