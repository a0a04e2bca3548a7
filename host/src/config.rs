//! The configuration file of `credbroker get`: named profiles that say which
//! plugin a provider name means, what it is granted and how it is limited.
//!
//! ```toml
//! [profiles.corp-ldap]
//! plugin = "ldap"                 # bundled or installed name, or a path to a .wasm
//! sha256 = "9f86d08..."           # optional pin: refuse any other plugin
//! cache-margin-seconds = 60       # renew this long before expiry
//!
//! [profiles.corp-ldap.settings]
//! login-url = "https://broker.corp.example/v1/login/ldap"
//! password = "env:LDAP_PASSWORD"  # resolved by the host, never seen as a reference
//!
//! [profiles.corp-ldap.grants]
//! http = ["https://broker.corp.example"]
//! ca-file = "/etc/credbroker/corp-ca.pem"
//!
//! [profiles.corp-ldap.limits]
//! timeout-ms = 120000
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::capabilities::Grants;
use crate::limits::Limits;
use crate::signing::TrustPolicy;

/// What runs as one plugin: shared by `get` profiles and `serve` validators.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PluginSpec {
    /// A bundled or installed plugin name, a path to a `.wasm` (relative
    /// paths are relative to the configuration file), or an OCI reference
    /// (`oci://REGISTRY/REPOSITORY:TAG` or `…@sha256:DIGEST`).
    pub plugin: String,
    /// The plugin's sha256 must be this (hex), or it does not run.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Settings handed to the plugin; values may be `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Capabilities granted to the plugin.
    #[serde(default)]
    pub grants: Grants,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
}

/// A `credbroker get` profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Profile {
    /// A bundled or installed plugin name, a path to a `.wasm`, or an OCI reference.
    pub plugin: String,
    /// The plugin's sha256 must be this (hex), or it does not run.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Settings handed to the plugin; values may be `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Capabilities granted to the plugin.
    #[serde(default)]
    pub grants: Grants,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Renew a cached credential this many seconds before it expires.
    #[serde(default = "default_margin")]
    pub cache_margin_seconds: u64,
    /// Cache credentials that carry no expiry for this long (default: not at all).
    #[serde(default)]
    pub cache_ttl_seconds: Option<u64>,
    /// Share cached credentials between clusters (default: one per API server).
    #[serde(default)]
    pub share_cache_across_clusters: bool,
    /// Where cached credentials and plugin state are kept (default: `auto`).
    #[serde(default)]
    pub storage: Option<crate::storage::StorageKind>,
}

impl Profile {
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

fn default_margin() -> u64 {
    60
}

/// The configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClientConfig {
    /// Which plugin files may run: signatures.
    #[serde(default)]
    pub plugins: TrustPolicy,
    /// Profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration `{}`: {}", path.display(), error.reason())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        error: crate::fsutil::ReadError,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid configuration `{}`: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
}

impl ClientConfig {
    /// Load `path`. A missing file is an empty configuration only when
    /// `optional` (the default location); a file named explicitly must exist.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the file cannot be read or parsed, or a profile's
    /// limits make no sense.
    pub fn load(path: &Path, optional: bool) -> Result<Self, ConfigError> {
        let text = match crate::fsutil::read_text_bounded(path, crate::fsutil::bounds::CONFIG) {
            Ok(text) => text,
            Err(e) if optional && e.is_not_found() => {
                return Ok(Self::default());
            }
            Err(error) => {
                return Err(ConfigError::Unreadable { path: path.to_path_buf(), error });
            }
        };
        Self::parse(&text, path)
    }

    /// Parse `text`, the contents of the configuration file at `path` (used in
    /// error messages and as the base of relative plugin paths).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when the text does not parse or a profile's
    /// limits make no sense.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        let mut config: Self = toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for (name, profile) in &mut config.profiles {
            check_name("profile", name).map_err(&invalid)?;
            let name = crate::boundary::text::name(name);
            profile.limits.validate().map_err(|e| invalid(format!("profile `{name}`: {e}")))?;
            check_range("cache-margin-seconds", profile.cache_margin_seconds, 0, 86_400)
                .and_then(|()| match profile.cache_ttl_seconds {
                    Some(ttl) => check_range("cache-ttl-seconds", ttl, 1, 366 * 86_400),
                    None => Ok(()),
                })
                .map_err(|e| invalid(format!("profile `{name}`: {e}")))?;
            profile.plugin = relative_to(base, &profile.plugin);
        }
        config.plugins.resolve_paths(base);
        config.plugins.validate().map_err(&invalid)?;
        if config.plugins.update_interval_seconds.is_some() {
            return Err(invalid(
                "[plugins] update-interval-seconds is for credbroker serve; `credbroker get` re-resolves tags only on \
                 `credbroker plugin update`"
                    .into(),
            ));
        }
        Ok(config)
    }
}

/// Check that `value` of setting `name` lies in `min..=max`.
///
/// # Errors
///
/// A message naming the setting, its range and the value.
pub fn check_range(name: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("`{name}` must be between {min} and {max}, not {value}"))
    }
}

/// Check that a name from the configuration (a profile, a validator) can be
/// shown as it is.
///
/// # Errors
///
/// A message with the name escaped.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if crate::boundary::text::is_clean_name(name) && name.len() <= 253 {
        Ok(())
    } else {
        Err(format!(
            "{what} name `{}` must be 1 to 253 characters without control or invisible characters",
            crate::boundary::text::name(name)
        ))
    }
}

/// A plugin path relative to the configuration file's directory; names stay names.
pub fn relative_to(base: &Path, plugin: &str) -> String {
    if crate::plugin::is_path(plugin) && !Path::new(plugin).is_absolute() {
        base.join(plugin).display().to_string()
    } else {
        plugin.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            r#"
[profiles.corp]
plugin = "plugins/corp.wasm"
sha256 = "abc"
[profiles.corp.settings]
url = "https://x"
[profiles.corp.grants]
http = ["https://x"]
[profiles.corp.limits]
cpu-ms = 10
"#,
        )
        .unwrap();
        let config = ClientConfig::load(&path, false).unwrap();
        let corp = &config.profiles["corp"];
        assert_eq!(corp.plugin, dir.path().join("plugins/corp.wasm").display().to_string());
        assert_eq!(corp.limits.cpu_ms, 10);
        assert_eq!(corp.limits.memory_mib, Limits::default().memory_mib);
        assert_eq!(corp.cache_margin_seconds, 60);
        assert_eq!(corp.grants.get::<Vec<String>>("http"), Some(vec!["https://x".to_string()]));
    }

    #[test]
    fn mistakes_are_reported_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[profiles.corp]\nplugin = \"x\"\ncache-margin = 5\n").unwrap();
        let err = ClientConfig::load(&path, false).unwrap_err().to_string();
        assert!(err.contains("unknown field `cache-margin`"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        std::fs::write(&path, "[profiles.corp]\nplugin = 5\n").unwrap();
        let err = ClientConfig::load(&path, false).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(ClientConfig::load(&dir.path().join("missing.toml"), true).unwrap().profiles.is_empty());
        assert!(ClientConfig::load(&dir.path().join("missing.toml"), false).is_err());
        std::fs::write(&path, "[profiles.corp]\nplugin = \"x\"\n[profiles.corp.limits]\ncpu-ms = 0\n").unwrap();
        let err = ClientConfig::load(&path, false).unwrap_err().to_string();
        assert!(err.contains("limit `cpu-ms` must be between 1 and 600000, not 0"), "{err}");
    }
}
