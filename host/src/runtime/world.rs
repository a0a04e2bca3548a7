//! Checking a component against the world it must implement, before it runs,
//! with errors that say what is missing.

use wasmtime::Engine;
use wasmtime::component::Component;

/// The contract package and version this host speaks.
pub const CONTRACT: &str = "credbroker:plugin@0.1.0";
const PACKAGE: &str = "credbroker:plugin";
const VERSION: &str = "0.1.0";

/// Host interfaces of the contract a plugin may import.
pub const HOST_INTERFACES: &[&str] =
    &["types", "config", "log", "prompt", "http", "files", "ldap", "state", "loopback"];

/// A world of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// Runs in `credbroker get`; exports `credential-provider`.
    Provider,
    /// Runs in `credbroker serve`; exports `token-validator`.
    Validator,
    /// Runs in `credbroker serve` behind the login endpoint; exports `password-login`.
    Login,
}

impl World {
    /// The world's name in the WIT.
    pub fn name(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Validator => "validator",
            Self::Login => "login",
        }
    }

    /// The interface the world exports.
    pub fn export(self) -> &'static str {
        match self {
            Self::Provider => "credential-provider",
            Self::Validator => "token-validator",
            Self::Login => "password-login",
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The full name of a contract interface, e.g. `credbroker:plugin/log@0.1.0`.
pub fn interface_name(interface: &str) -> String {
    format!("{PACKAGE}/{interface}@{VERSION}")
}

/// What a component imports and exports, by name.
#[derive(Debug, Clone, Default)]
pub struct ComponentShape {
    /// Import names, e.g. `credbroker:plugin/http@0.1.0`, `wasi:cli/stdout@0.2.6`.
    pub imports: Vec<String>,
    /// Export names.
    pub exports: Vec<String>,
}

impl ComponentShape {
    /// Read the shape of `component`.
    pub fn of(engine: &Engine, component: &Component) -> Self {
        let ty = component.component_type();
        Self {
            imports: ty.imports(engine).map(|(name, _)| name.to_string()).collect(),
            exports: ty.exports(engine).map(|(name, _)| name.to_string()).collect(),
        }
    }

    /// The worlds this component implements.
    pub fn worlds(&self) -> Vec<World> {
        [World::Provider, World::Validator, World::Login]
            .into_iter()
            .filter(|w| self.exports.contains(&interface_name(w.export())))
            .collect()
    }

    /// Check the component implements `world` and imports nothing this host
    /// lacks.
    ///
    /// # Errors
    ///
    /// A sentence naming the missing export or the unknown import and the
    /// contract version this host speaks.
    pub fn check(&self, world: World) -> Result<(), String> {
        self.check_any(&[world]).map(|_| ())
    }

    /// Check the component implements at least one of `worlds` and imports
    /// nothing this host lacks; returns the worlds of `worlds` it implements.
    ///
    /// # Errors
    ///
    /// As for [`ComponentShape::check`].
    pub fn check_any(&self, worlds: &[World]) -> Result<Vec<World>, String> {
        let implemented: Vec<World> = self.worlds().into_iter().filter(|w| worlds.contains(w)).collect();
        if implemented.is_empty() {
            let wanted =
                worlds.iter().map(|w| format!("`{}`", interface_name(w.export()))).collect::<Vec<_>>().join(" or ");
            let names = worlds.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(" or ");
            let found = self.exports.iter().filter(|e| !e.starts_with("wasi:")).cloned().collect::<Vec<_>>();
            let found = if found.is_empty() { "nothing".to_string() } else { found.join(", ") };
            return Err(format!(
                "it does not implement the {names} world: it must export {wanted} but exports {found} \
                 (this credbroker speaks {CONTRACT})"
            ));
        }
        for import in &self.imports {
            if let Some(rest) = import.strip_prefix(&format!("{PACKAGE}/")) {
                let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
                if !HOST_INTERFACES.contains(&interface) || version != VERSION {
                    return Err(format!(
                        "it imports `{import}`, which this credbroker does not provide (it speaks {CONTRACT})"
                    ));
                }
            }
        }
        Ok(implemented)
    }
}
