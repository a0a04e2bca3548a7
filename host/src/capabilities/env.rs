//! `env`: environment variables of the credbroker process that the operator
//! names (`grants.env = ["AWS_*", "HOME"]`), passed into the plugin's WASI
//! environment. Nothing else of the environment reaches a plugin.
//!
//! The plugin-facing side is WASI's own `wasi:cli/environment` (Rust's
//! `std::env::var` in a plugin reads it), so this capability has no
//! interface of its own in the contract: it decides what that environment
//! holds. The variables are read once, when the plugin is configured;
//! every value is a secret of each run (redacted from its logs and errors),
//! the whole environment must fit in `max-call-bytes`, and each run's copy is
//! charged to its memory account.

use std::ffi::OsString;
use std::sync::Arc;

use wasmtime::component::Linker;

use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::boundary::CapView;

/// Longest variable name or prefix accepted in a grant.
const MAX_NAME: usize = 256;

/// The `env` capability.
pub struct Env;

impl Capability for Env {
    const INTERFACE: &'static str = "wasi:cli/environment";
    const WHAT: &'static str = "read environment variables";
    const GRANT: &'static str = "grants.env: variable names or PREFIX_*";
    type Policy = EnvPolicy;
    type State = ();

    fn configure(grants: &mut GrantTable, _: &PluginSetup) -> Result<EnvPolicy, GrantError> {
        let patterns: Vec<String> = grants.take("env")?;
        EnvPolicy::new(&patterns, std::env::vars_os())
    }

    fn prepare(_: &Arc<EnvPolicy>) {}

    fn link(_: &mut Linker<HostState>, _: fn(&mut HostState) -> CapView<'_, ()>) -> wasmtime::Result<()> {
        // The plugin reads its environment through WASI, which `wasi::link`
        // adds; what that environment holds comes from this policy.
        Ok(())
    }
}

/// One entry of the grant: a variable's exact name, or a prefix (`AWS_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(entry: &str) -> Result<Self, GrantError> {
        let invalid = |message: String| GrantError::Invalid { key: "env", message };
        let (name, prefix) = match entry.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (entry, false),
        };
        if prefix && name.is_empty() {
            return Err(invalid(
                "`*` would pass the whole environment; name the variables, or a prefix like `AWS_*`".into(),
            ));
        }
        let well_formed = !name.is_empty()
            && name.len() <= MAX_NAME
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !well_formed {
            return Err(invalid(format!(
                "`{}` is not a variable name or a prefix ending in `*` (letters, digits and `_`, like AWS_REGION or AWS_*)",
                crate::boundary::text::name(entry)
            )));
        }
        Ok(if prefix { Self::Prefix(name.to_string()) } else { Self::Exact(name.to_string()) })
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => name == exact,
            Self::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }
}

/// The variables one plugin sees, read when it was configured.
#[derive(Debug, Default)]
pub struct EnvPolicy {
    variables: Vec<(String, String)>,
}

impl EnvPolicy {
    /// The variables of `environment` that `patterns` (the grant) name.
    /// A matching variable whose name or value is not UTF-8 is left out with
    /// a warning: WASI's environment holds only strings.
    ///
    /// # Errors
    ///
    /// [`GrantError::Invalid`] for an entry that is neither a name nor a
    /// prefix, or a bare `*`.
    pub fn new(
        patterns: &[String],
        environment: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Self, GrantError> {
        let patterns = patterns.iter().map(|p| Pattern::parse(p)).collect::<Result<Vec<_>, _>>()?;
        if patterns.is_empty() {
            return Ok(Self::default());
        }
        let mut variables = Vec::new();
        for (name, value) in environment {
            let Some(text) = name.to_str() else { continue };
            if !patterns.iter().any(|p| p.matches(text)) {
                continue;
            }
            match value.into_string() {
                Ok(value) => variables.push((text.to_string(), value)),
                Err(_) => tracing::warn!(
                    "environment variable {text} is granted but is not UTF-8: the plugin does not see it"
                ),
            }
        }
        variables.sort();
        Ok(Self { variables })
    }

    /// The variables, sorted by name.
    pub fn variables(&self) -> &[(String, String)] {
        &self.variables
    }

    /// Their values: secrets of every run.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(|(_, value)| value.as_str())
    }

    /// Their size as WASI hands them over (`NAME` and `VALUE` of each).
    pub fn bytes(&self) -> usize {
        self.variables.iter().map(|(name, value)| name.len() + value.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment() -> Vec<(OsString, OsString)> {
        [("AWS_REGION", "eu-west-1"), ("AWS_SECRET_ACCESS_KEY", "s3cret"), ("HOME", "/home/alice"), ("PATH", "/bin")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }

    fn grant(patterns: &[&str]) -> Result<EnvPolicy, GrantError> {
        EnvPolicy::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>(), environment())
    }

    #[test]
    fn only_named_variables_and_prefixes_pass() {
        let policy = grant(&["AWS_*", "HOME"]).unwrap();
        let names: Vec<&str> = policy.variables().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["AWS_REGION", "AWS_SECRET_ACCESS_KEY", "HOME"]);
        assert_eq!(policy.values().collect::<Vec<_>>(), ["eu-west-1", "s3cret", "/home/alice"]);
        assert_eq!(policy.bytes(), "AWS_REGIONeu-west-1AWS_SECRET_ACCESS_KEYs3cretHOME/home/alice".len());
        assert!(grant(&[]).unwrap().variables().is_empty(), "nothing by default");
        assert!(grant(&["HOM"]).unwrap().variables().is_empty(), "a name is exact");
        assert_eq!(grant(&["HOM*"]).unwrap().variables().len(), 1);
    }

    #[test]
    fn malformed_entries_are_refused_at_load() {
        let everything = grant(&["*"]).unwrap_err().to_string();
        assert!(everything.starts_with("grants.env: `*` would pass the whole environment"), "{everything}");
        for bad in ["", "AWS-*", "A*B", "1ABC", "HOME=/x", "A B", "x\u{1b}[2J"] {
            let refused = grant(&[bad]).unwrap_err().to_string();
            assert!(refused.contains("is not a variable name or a prefix"), "{bad:?}: {refused}");
            assert!(!refused.contains('\u{1b}'), "escaped: {refused}");
        }
    }

    #[test]
    fn each_run_holds_its_environment_in_its_memory_account_and_redacts_it() {
        let path = std::env::var("PATH").expect("tests run with a PATH");
        let run = crate::capabilities::testing::Run::builder().grants("env = [\"PATH\"]").build();
        assert!(run.memory.held() >= "PATH".len() + path.len(), "{} bytes held", run.memory.held());
        if path.len() >= crate::boundary::redact::MIN_SECRET_LEN {
            assert_eq!(run.host.boundary().output().clean(&format!("at {path}")), "at [REDACTED]");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_variable_that_is_not_utf8_is_left_out() {
        use std::os::unix::ffi::OsStringExt;
        let environment = vec![(OsString::from("AWS_X"), OsString::from_vec(vec![0xff, 0xfe]))];
        let policy = EnvPolicy::new(&["AWS_*".to_string()], environment).unwrap();
        assert!(policy.variables().is_empty());
    }
}
