//! Plugin settings and the secret references the host resolves for them.
//!
//! An operator writes a setting value as a literal, or as a reference the host
//! resolves before the plugin runs: `env:NAME` (an environment variable of the
//! credbroker process) or `file:PATH` (a file's content, one trailing newline
//! removed). `literal:VALUE` passes a value that happens to start with `env:` or
//! `file:` unchanged. The plugin receives only resolved values and never gets
//! the environment or filesystem itself. Resolved values are secret: the log
//! capability redacts them.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Why a setting could not be resolved. Messages name the setting and the
/// reference, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `env:NAME` names a variable that is not set (or not UTF-8).
    #[error("setting `{key}`: environment variable `{var}` is not set")]
    EnvNotSet {
        /// The setting.
        key: String,
        /// The variable it names.
        var: String,
    },
    /// `file:PATH` names a file that cannot be read (missing, not a regular
    /// file, over the size bound).
    #[error("setting `{key}`: {error}")]
    FileUnreadable {
        /// The setting.
        key: String,
        /// Why.
        error: crate::fsutil::ReadError,
    },
    /// A setting name with control or invisible characters.
    #[error("setting `{0}`: a setting name may not hold control or invisible characters")]
    BadName(String),
    /// `file:PATH` names a file that is not UTF-8 text.
    #[error("setting `{key}`: `{path}` is not UTF-8 text")]
    FileNotText {
        /// The setting.
        key: String,
        /// The file it names.
        path: PathBuf,
    },
    /// A reference with nothing after the prefix.
    #[error("setting `{key}`: `{prefix}` needs a name after it, e.g. `{prefix}MY_TOKEN`")]
    EmptyReference {
        /// The setting.
        key: String,
        /// `env:` or `file:`.
        prefix: &'static str,
    },
    /// A `--set` argument without `=`.
    #[error("`{0}` is not KEY=VALUE")]
    NotKeyValue(String),
}

/// Where a setting's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingSource {
    /// The value as written.
    Literal(String),
    /// An environment variable of the credbroker process.
    Env(String),
    /// A file's content.
    File(PathBuf),
}

impl SettingSource {
    /// Parse a value as the operator wrote it.
    pub fn parse(raw: &str) -> Self {
        if let Some(name) = raw.strip_prefix("env:") {
            Self::Env(name.to_string())
        } else if let Some(path) = raw.strip_prefix("file:") {
            Self::File(PathBuf::from(path))
        } else if let Some(value) = raw.strip_prefix("literal:") {
            Self::Literal(value.to_string())
        } else {
            Self::Literal(raw.to_string())
        }
    }

    /// Whether the resolved value counts as secret by where it came from.
    pub fn is_reference(&self) -> bool {
        !matches!(self, Self::Literal(_))
    }
}

/// Setting names whose values are treated as secret even when written
/// literally: they are redacted from logs all the same.
fn is_secret_name(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["token", "password", "secret", "private-key", "client-key", "credential"].iter().any(|word| key.contains(word))
}

/// Settings with every reference resolved, ready to hand to a plugin.
#[derive(Debug, Clone, Default)]
pub struct ResolvedSettings {
    values: BTreeMap<String, String>,
    secrets: Vec<String>,
}

impl ResolvedSettings {
    /// Resolve `raw` (key to value as written).
    ///
    /// # Errors
    ///
    /// The first reference that cannot be resolved.
    pub fn resolve(raw: &BTreeMap<String, String>) -> Result<Self, SettingsError> {
        let mut resolved = Self::default();
        for (key, value) in raw {
            if !crate::boundary::text::is_clean_name(key) {
                return Err(SettingsError::BadName(crate::boundary::text::name(key).into_owned()));
            }
            let source = SettingSource::parse(value);
            let value = match &source {
                SettingSource::Literal(v) => v.clone(),
                SettingSource::Env(var) => {
                    if var.is_empty() {
                        return Err(SettingsError::EmptyReference { key: key.clone(), prefix: "env:" });
                    }
                    std::env::var(var).map_err(|_| SettingsError::EnvNotSet { key: key.clone(), var: var.clone() })?
                }
                SettingSource::File(path) => {
                    if path.as_os_str().is_empty() {
                        return Err(SettingsError::EmptyReference { key: key.clone(), prefix: "file:" });
                    }
                    let bytes = crate::fsutil::read_bounded(path, crate::fsutil::bounds::SMALL)
                        .map_err(|error| SettingsError::FileUnreadable { key: key.clone(), error })?;
                    let mut text = String::from_utf8(bytes)
                        .map_err(|_| SettingsError::FileNotText { key: key.clone(), path: path.clone() })?;
                    if text.ends_with('\n') {
                        text.pop();
                        if text.ends_with('\r') {
                            text.pop();
                        }
                    }
                    text
                }
            };
            if source.is_reference() || is_secret_name(key) {
                resolved.secrets.push(value.clone());
            }
            resolved.values.insert(key.clone(), value);
        }
        Ok(resolved)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// All settings, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Values that must never reach a log.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }
}

/// Parse `KEY=VALUE` (a `--set` argument).
///
/// # Errors
///
/// [`SettingsError::NotKeyValue`] without `=` or with an empty key.
pub fn parse_key_value(arg: &str) -> Result<(String, String), SettingsError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(SettingsError::NotKeyValue(arg.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn references_resolve_and_become_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "hunter2\n").unwrap();
        let settings = ResolvedSettings::resolve(&raw(&[
            ("user", "alice"),
            ("password", &format!("file:{}", file.display())),
            ("home", "env:PATH"),
            ("odd", "literal:env:NOT_A_REFERENCE"),
        ]))
        .unwrap();
        assert_eq!(settings.get("password"), Some("hunter2"));
        assert_eq!(settings.get("odd"), Some("env:NOT_A_REFERENCE"));
        assert_eq!(settings.get("home"), std::env::var("PATH").ok().as_deref());
        assert!(settings.secrets().contains(&"hunter2".to_string()));
        assert!(!settings.secrets().contains(&"alice".to_string()));
    }

    #[test]
    fn missing_references_name_the_setting_not_the_value() {
        let err = ResolvedSettings::resolve(&raw(&[("token", "env:CREDBROKER_TEST_UNSET_VAR")])).unwrap_err();
        assert_eq!(err.to_string(), "setting `token`: environment variable `CREDBROKER_TEST_UNSET_VAR` is not set");
        let err = ResolvedSettings::resolve(&raw(&[("token", "file:/nonexistent/credbroker")])).unwrap_err();
        assert!(err.to_string().starts_with("setting `token`: cannot read `/nonexistent/credbroker`"));
        // Windows has no /dev/zero (and Windows' devices are not files to open).
        if std::path::Path::new("/dev/zero").exists() {
            let err = ResolvedSettings::resolve(&raw(&[("x", "file:/dev/zero")])).unwrap_err();
            assert_eq!(err.to_string(), "setting `x`: `/dev/zero` is a character device, not a regular file");
        }
        let err = ResolvedSettings::resolve(&raw(&[("evil\nINFO fake", "x")])).unwrap_err();
        assert!(err.to_string().starts_with("setting `evil\\nINFO fake`"), "{err}");
    }

    #[test]
    fn key_value_arguments() {
        assert_eq!(parse_key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
