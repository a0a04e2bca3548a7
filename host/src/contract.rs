//! Checking a component against the world it must implement, before it runs,
//! with errors that say what is missing.

use wasmtime::Engine;
use wasmtime::component::Component;

/// The contract package and version this host speaks.
pub const CONTRACT: &str = "credbroker:plugin@0.1.5";
const PACKAGE: &str = "credbroker:plugin";
/// The contract version this host speaks (`wit/credbroker.wit`).
pub const VERSION: &str = "0.1.5";

/// How the contract version a plugin was built against relates to this host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compatibility {
    /// The same version.
    Same,
    /// An earlier version of the same compatible track: it runs (the host
    /// links every earlier interface version's functions).
    Older,
    /// A later version of the same track: it may call functions this host
    /// lacks, so it does not run.
    Newer,
    /// Another track (another major version; while 0.x, another minor).
    Incompatible,
}

/// How `version` (of the contract) relates to [`VERSION`], by the component
/// model's semver rules (wasmtime's): versions are compatible when they share
/// the major version, or, while the major is 0, the minor version.
pub fn compatibility(version: &str) -> Compatibility {
    let (Ok(theirs), Ok(ours)) = (semver::Version::parse(version), semver::Version::parse(VERSION)) else {
        return Compatibility::Incompatible;
    };
    let track = |v: &semver::Version| if v.major > 0 { (v.major, 0) } else { (0, v.minor) };
    if !theirs.pre.is_empty() || track(&theirs) != track(&ours) {
        Compatibility::Incompatible
    } else if theirs == ours {
        Compatibility::Same
    } else if theirs < ours {
        Compatibility::Older
    } else {
        Compatibility::Newer
    }
}

/// `credbroker:plugin/IFACE@VERSION` split into the interface and version.
pub fn contract_item(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

/// Whether this host provides contract interface `interface` to plugins:
/// the shared types and every registered capability.
pub fn provides(interface: &str) -> bool {
    interface == "types" || crate::capabilities::ALL.iter().any(|c| c.interface == interface)
}

/// The optional export a validator prepares in (world `validator-with-setup`).
pub const SETUP_EXPORT: &str = "validator-setup";

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

/// A file that is not a usable WebAssembly component.
#[derive(Debug, thiserror::Error)]
pub enum NotAComponent {
    /// It does not parse as a component.
    #[error("not a WebAssembly component: {0}")]
    Malformed(String),
    /// It is over a size or complexity limit.
    #[error(transparent)]
    TooComplex(#[from] TooComplex),
}

/// The largest component file accepted (the Python plugin is 18 MB).
pub const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;
/// How deep modules and components may nest inside the component.
pub const MAX_NESTING: u64 = 16;
/// Most modules and components in one component, nested ones included.
pub const MAX_UNITS: u64 = 1_000;
/// Most core functions defined, over all modules.
pub const MAX_CORE_FUNCTIONS: u64 = 100_000;
/// Most core imports and exports, over all modules.
pub const MAX_CORE_IMPORTS_EXPORTS: u64 = 50_000;
/// Most component imports and exports, over all (nested) components.
pub const MAX_COMPONENT_IMPORTS_EXPORTS: u64 = 1_000;
/// Most other definitions (types, tables, memories, globals, element and data
/// segments, instances, aliases, canonical functions), over everything.
pub const MAX_OTHER_DEFINITIONS: u64 = 50_000;

/// A component over one of the limits above.
#[derive(Debug, thiserror::Error)]
pub enum TooComplex {
    /// The file is too large.
    #[error("the component is {0} bytes; the limit is {MAX_COMPONENT_BYTES} bytes (64 MiB)")]
    Bytes(usize),
    /// Too many of one kind of item.
    #[error("the component has more than {limit} {what}; a plugin may have at most {limit}")]
    Count {
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
}

/// Check `wasm` against the size and complexity limits of a plugin, reading
/// only section headers (no validation, nothing compiled): wasmtime's compile
/// time and memory grow with these counts, and a small file could otherwise
/// cost minutes and gigabytes. A file that does not parse passes here; the
/// compiler then says what is wrong with it.
///
/// # Errors
///
/// [`TooComplex`] naming the first limit exceeded.
pub fn check_bounds(wasm: &[u8]) -> Result<(), TooComplex> {
    use wasmparser::{Parser, Payload};
    if wasm.len() > MAX_COMPONENT_BYTES {
        return Err(TooComplex::Bytes(wasm.len()));
    }
    let (mut depth, mut units, mut functions, mut core_io, mut component_io, mut other) = (0u64, 0, 0, 0, 0, 0);
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else { break };
        let (counter, added) = match &payload {
            Payload::Version { .. } => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(TooComplex::Count {
                        what: "levels of nested modules and components",
                        limit: MAX_NESTING,
                    });
                }
                (&mut units, 1)
            }
            Payload::End(_) => {
                depth = depth.saturating_sub(1);
                continue;
            }
            Payload::FunctionSection(r) => (&mut functions, r.count()),
            Payload::ImportSection(r) => (&mut core_io, r.count()),
            Payload::ExportSection(r) => (&mut core_io, r.count()),
            Payload::ComponentImportSection(r) => (&mut component_io, r.count()),
            Payload::ComponentExportSection(r) => (&mut component_io, r.count()),
            Payload::TypeSection(r) => (&mut other, r.count()),
            Payload::TableSection(r) => (&mut other, r.count()),
            Payload::MemorySection(r) => (&mut other, r.count()),
            Payload::TagSection(r) => (&mut other, r.count()),
            Payload::GlobalSection(r) => (&mut other, r.count()),
            Payload::ElementSection(r) => (&mut other, r.count()),
            Payload::DataSection(r) => (&mut other, r.count()),
            Payload::InstanceSection(r) => (&mut other, r.count()),
            Payload::CoreTypeSection(r) => (&mut other, r.count()),
            Payload::ComponentInstanceSection(r) => (&mut other, r.count()),
            Payload::ComponentAliasSection(r) => (&mut other, r.count()),
            Payload::ComponentTypeSection(r) => (&mut other, r.count()),
            Payload::ComponentCanonicalSection(r) => (&mut other, r.count()),
            _ => continue,
        };
        *counter += u64::from(added);
        for (count, limit, what) in [
            (units, MAX_UNITS, "modules and components"),
            (functions, MAX_CORE_FUNCTIONS, "core functions"),
            (core_io, MAX_CORE_IMPORTS_EXPORTS, "core imports and exports"),
            (component_io, MAX_COMPONENT_IMPORTS_EXPORTS, "component imports and exports"),
            (other, MAX_OTHER_DEFINITIONS, "other definitions (types, instances, aliases, segments...)"),
        ] {
            if count > limit {
                return Err(TooComplex::Count { what, limit });
            }
        }
    }
    Ok(())
}

/// Names listed in an error before the rest are only counted.
const LISTED_NAMES: usize = 8;
/// Bytes of one name shown in an error.
const SHOWN_NAME_BYTES: usize = 100;

/// `name` as an error may show it: unsafe characters escaped, at most
/// [`SHOWN_NAME_BYTES`] bytes of it.
fn shown(name: &str) -> String {
    crate::boundary::text::one_line(&crate::boundary::text::truncate(name, SHOWN_NAME_BYTES)).into_owned()
}

/// The first [`LISTED_NAMES`] of `names`, shown, and how many more there are.
fn listed(names: &[String]) -> String {
    let mut text = names.iter().take(LISTED_NAMES).map(|n| shown(n)).collect::<Vec<_>>().join(", ");
    if names.len() > LISTED_NAMES {
        text.push_str(&format!(" and {} more", names.len() - LISTED_NAMES));
    }
    text
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

    /// Read the shape of the component in `wasm` without compiling it.
    ///
    /// # Errors
    ///
    /// [`NotAComponent`] for a core module, a truncated file, one over the
    /// [size and complexity limits](check_bounds) or anything else.
    pub fn parse(wasm: &[u8]) -> Result<Self, NotAComponent> {
        use wasmparser::{Encoding, Parser, Payload};
        check_bounds(wasm)?;
        let mut shape = Self::default();
        // Nested modules and components have their own imports and exports;
        // only the outermost component's are the plugin's.
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(wasm) {
            let payload = payload.map_err(|e| NotAComponent::Malformed(e.to_string()))?;
            match payload {
                Payload::Version { encoding, .. } => {
                    if depth == 0 && encoding != Encoding::Component {
                        return Err(NotAComponent::Malformed(
                            "it is a core module; build it as a component (cargo build --target wasm32-wasip2)".into(),
                        ));
                    }
                    depth += 1;
                }
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(reader) if depth == 1 => {
                    for import in reader {
                        let import = import.map_err(|e| NotAComponent::Malformed(e.to_string()))?;
                        shape.imports.push(import.name.name.to_string());
                    }
                }
                Payload::ComponentExportSection(reader) if depth == 1 => {
                    for export in reader {
                        let export = export.map_err(|e| NotAComponent::Malformed(e.to_string()))?;
                        shape.exports.push(export.name.name.to_string());
                    }
                }
                _ => {}
            }
        }
        if depth != 0 {
            return Err(NotAComponent::Malformed("the file ends in the middle of the component (truncated?)".into()));
        }
        Ok(shape)
    }

    /// The worlds this component implements (with a compatible contract version).
    pub fn worlds(&self) -> Vec<World> {
        [World::Provider, World::Validator, World::Login]
            .into_iter()
            .filter(|w| {
                self.exports.iter().filter_map(|e| contract_item(e)).any(|(interface, version)| {
                    interface == w.export()
                        && matches!(compatibility(version), Compatibility::Same | Compatibility::Older)
                })
            })
            .collect()
    }

    /// Whether the component exports `validator-setup` (0.1.3) in a version
    /// this host can call.
    pub fn has_validator_setup(&self) -> bool {
        self.exports.iter().filter_map(|e| contract_item(e)).any(|(interface, version)| {
            interface == SETUP_EXPORT && matches!(compatibility(version), Compatibility::Same | Compatibility::Older)
        })
    }

    /// The contract versions the component was built against (normally one).
    pub fn contract_versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = self
            .imports
            .iter()
            .chain(&self.exports)
            .filter_map(|name| contract_item(name))
            .map(|(_, version)| version.to_string())
            .collect();
        versions.sort();
        versions.dedup();
        versions
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
            for version in self.contract_versions() {
                match compatibility(&version) {
                    Compatibility::Newer => {
                        return Err(format!(
                            "it was built against {PACKAGE}@{version}, newer than this credbroker's {VERSION}; \
                             upgrade credbroker",
                            version = shown(&version)
                        ));
                    }
                    Compatibility::Incompatible => {
                        return Err(format!(
                            "it was built against {PACKAGE}@{version}, which this credbroker ({CONTRACT}) cannot run; \
                             rebuild it against {CONTRACT}",
                            version = shown(&version)
                        ));
                    }
                    Compatibility::Same | Compatibility::Older => {}
                }
            }
            let wanted =
                worlds.iter().map(|w| format!("`{}`", interface_name(w.export()))).collect::<Vec<_>>().join(" or ");
            let names = worlds.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(" or ");
            let found = self.exports.iter().filter(|e| !e.starts_with("wasi:")).cloned().collect::<Vec<_>>();
            let found = if found.is_empty() { "nothing".to_string() } else { listed(&found) };
            return Err(format!(
                "it does not implement the {names} world: it must export {wanted} but exports {found} \
                 (this credbroker speaks {CONTRACT})"
            ));
        }
        for import in &self.imports {
            if let Some((interface, version)) = contract_item(import) {
                let compatible = matches!(compatibility(version), Compatibility::Same | Compatibility::Older);
                if !provides(interface) || !compatible {
                    return Err(format!(
                        "it imports `{}`, which this credbroker does not provide (it speaks {CONTRACT})",
                        shown(import)
                    ));
                }
            }
        }
        Ok(implemented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_versions_of_the_track_are_compatible_later_ones_are_not() {
        assert_eq!(compatibility(VERSION), Compatibility::Same);
        assert_eq!(compatibility("0.1.0"), Compatibility::Older);
        assert_eq!(compatibility("0.1.9"), Compatibility::Newer);
        assert_eq!(compatibility("0.2.0"), Compatibility::Incompatible);
        assert_eq!(compatibility("1.0.0"), Compatibility::Incompatible);
        assert_eq!(compatibility("0.1.0-rc1"), Compatibility::Incompatible);
        assert_eq!(compatibility("x"), Compatibility::Incompatible);
    }

    fn shape(version: &str) -> ComponentShape {
        ComponentShape {
            imports: vec![format!("{PACKAGE}/log@{version}"), "wasi:cli/stderr@0.2.6".into()],
            exports: vec![format!("{PACKAGE}/credential-provider@{version}")],
        }
    }

    #[test]
    fn shapes_are_checked_by_version() {
        assert_eq!(shape("0.1.0").check_any(&[World::Provider]).unwrap(), [World::Provider]);
        let newer = shape("0.1.7").check(World::Provider).unwrap_err();
        assert!(newer.contains("newer than this credbroker's") && newer.contains("upgrade credbroker"), "{newer}");
        let other = shape("0.2.0").check(World::Provider).unwrap_err();
        assert!(other.contains("rebuild it against credbroker:plugin@0.1"), "{other}");
        let wrong_world = shape(VERSION).check(World::Validator).unwrap_err();
        assert!(wrong_world.contains("does not implement the `validator` world"), "{wrong_world}");
    }

    #[test]
    fn core_modules_and_truncated_files_are_not_components() {
        let module = b"\0asm\x01\0\0\0";
        assert!(ComponentShape::parse(module).unwrap_err().to_string().contains("core module"));
        let bundled = crate::bundled::find("static").unwrap().wasm;
        let parsed = ComponentShape::parse(bundled).unwrap();
        assert_eq!(parsed.worlds(), [World::Provider]);
        assert!(ComponentShape::parse(&bundled[..bundled.len() / 2]).is_err());
    }
}
