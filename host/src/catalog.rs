//! What plugins there are and what each one is: the bundled and installed
//! plugins, what a component implements and asks for, and installing one.
//! The data behind `credbroker plugin list|inspect|install`.

use std::path::{Path, PathBuf};

use crate::bundled;
use crate::contract::World;
use crate::contract::{self, Compatibility, ComponentShape, NotAComponent, contract_item};
use crate::plugin::{PluginError, PluginOrigin, PluginRef, sha256_hex};

/// A host capability a plugin can import, and the grant that opens it.
pub use crate::capabilities::CapabilityInfo as Capability;

/// The shared types: an interface a plugin imports that is no capability.
const TYPES: Capability = Capability { interface: "types", what: "shared types", grant: "nothing (no functions)" };

/// Where a listed plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Compiled into this binary.
    Bundled,
    /// Installed in a plugin directory (it shadows a bundled plugin of the same name).
    Installed(PathBuf),
    /// Named by path.
    File(PathBuf),
    /// Pulled from an OCI registry (the reference), kept in the store.
    Oci(String),
}

/// One plugin, described.
#[derive(Debug)]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Where it comes from.
    pub source: Source,
    /// sha256 of the `.wasm`, hex.
    pub sha256: String,
    /// Size of the `.wasm` in bytes.
    pub size: usize,
    /// Its imports and exports, or why it is not a component.
    pub shape: Result<ComponentShape, NotAComponent>,
}

impl PluginInfo {
    /// Describe `plugin`.
    ///
    /// # Errors
    ///
    /// When a file plugin can no longer be read.
    pub fn of(plugin: &PluginRef, plugin_dirs: &[PathBuf]) -> std::io::Result<Self> {
        let wasm = plugin.wasm()?;
        let source = match &plugin.origin {
            PluginOrigin::Bundled(_) => Source::Bundled,
            PluginOrigin::File(path) if plugin_dirs.iter().any(|d| path.parent() == Some(d.as_path())) => {
                Source::Installed(path.clone())
            }
            PluginOrigin::File(path) => Source::File(path.clone()),
            PluginOrigin::Oci { reference, .. } => Source::Oci(reference.to_string()),
        };
        Ok(Self {
            name: plugin.name.clone(),
            source,
            sha256: plugin.sha256.clone(),
            size: wasm.len(),
            shape: ComponentShape::parse(&wasm),
        })
    }

    /// The worlds it implements (empty when it is not a usable component).
    pub fn worlds(&self) -> Vec<World> {
        self.shape.as_ref().map(ComponentShape::worlds).unwrap_or_default()
    }

    /// The contract versions it was built against, each with how it relates
    /// to this host's.
    pub fn contract(&self) -> Vec<(String, Compatibility)> {
        let versions = self.shape.as_ref().map(ComponentShape::contract_versions).unwrap_or_default();
        versions.into_iter().map(|v| (v.clone(), contract::compatibility(&v))).collect()
    }

    /// The host capabilities it imports: contract interfaces, and the WASI
    /// interfaces a capability decides about (`wasi:cli/environment`).
    pub fn capabilities(&self) -> Vec<Capability> {
        let Ok(shape) = &self.shape else { return Vec::new() };
        let imported = |interface: &str| {
            shape.imports.iter().any(|import| match contract_item(import) {
                Some((name, _)) => name == interface,
                None => import.split('@').next() == Some(interface),
            })
        };
        std::iter::once(&TYPES).chain(crate::capabilities::ALL).filter(|c| imported(c.interface)).copied().collect()
    }

    /// Its imports that are neither WASI nor the contract: a host cannot
    /// satisfy them, so the plugin cannot run.
    pub fn foreign_imports(&self) -> Vec<String> {
        let Ok(shape) = &self.shape else { return Vec::new() };
        shape.imports.iter().filter(|i| contract_item(i).is_none() && !i.starts_with("wasi:")).cloned().collect()
    }

    /// Its WASI imports (answered by the sandbox: no files or sockets, only the granted environment).
    pub fn wasi_imports(&self) -> Vec<String> {
        let Ok(shape) = &self.shape else { return Vec::new() };
        shape.imports.iter().filter(|i| i.starts_with("wasi:")).cloned().collect()
    }
}

/// Every bundled and installed plugin; an installed plugin shadows the bundled
/// one of the same name (as [`PluginRef::locate`] finds it).
pub fn list(plugin_dirs: &[PathBuf]) -> Vec<PluginInfo> {
    let mut names: Vec<String> = bundled::ALL.iter().map(|p| p.name.to_string()).collect();
    names.extend(crate::plugin::available(plugin_dirs, None));
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| PluginRef::locate(&name, plugin_dirs).ok())
        .filter_map(|plugin| PluginInfo::of(&plugin, plugin_dirs).ok())
        .collect()
}

/// The OCI plugins in `store`, by reference (those whose ref file or
/// component no longer checks out are left out: `get` refuses them too).
pub fn list_stored(store: &crate::plugin::store::PluginStore) -> Vec<PluginInfo> {
    store
        .records()
        .into_iter()
        .filter_map(|record| {
            let reference = crate::plugin::reference::OciReference::parse(&record.reference).ok()?;
            let record = store.lookup(&reference).ok()??;
            PluginInfo::of(&PluginRef::stored(&reference, record, store), &[]).ok()
        })
        .collect()
}

/// Why a plugin cannot be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The file cannot be read, or its pin does not match.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// It is not something credbroker can run.
    #[error("`{}` cannot be installed: {reason}", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The name is not a plain plugin name.
    #[error("`{0}` is not a plugin name: use letters, digits, `-` and `_`")]
    BadName(String),
    /// A different plugin is installed under the name.
    #[error("a different plugin is already installed as `{}` (sha256 {existing}); pass --force to replace it", path.display())]
    Exists {
        /// The installed file.
        path: PathBuf,
        /// Its sha256.
        existing: String,
    },
    /// Writing into the plugin directory failed.
    #[error("cannot write `{}`: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// What [`install`] did.
#[derive(Debug)]
pub struct Installed {
    /// The installed name.
    pub name: String,
    /// The installed file.
    pub path: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// The worlds it implements.
    pub worlds: Vec<World>,
    /// Whether a signature file was installed beside it.
    pub signature: bool,
    /// Whether it shadows a bundled plugin.
    pub shadows_bundled: bool,
    /// Whether the same file was already installed (nothing changed).
    pub unchanged: bool,
}

/// Install the component at `source` into `dir` as `name` (default: the file
/// stem), after checking it against `sha256` when given and making sure it is
/// a component this host can run. Its `.sig` is installed with it.
///
/// # Errors
///
/// [`InstallError`] saying what to do.
pub fn install(
    source: &Path,
    name: Option<&str>,
    sha256: Option<&str>,
    dir: &Path,
    force: bool,
) -> Result<Installed, InstallError> {
    let name = match name {
        Some(name) => name.to_string(),
        None => source.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string(),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(InstallError::BadName(name));
    }
    let plugin = PluginRef::locate(&source.display().to_string(), &[])
        .or_else(|_| PluginRef::locate(&format!("./{}", source.display()), &[]))?;
    if let Some(pin) = sha256 {
        plugin.verify_pin(pin)?;
    }
    let wasm = plugin.wasm().map_err(|error| InstallError::Io { path: source.to_path_buf(), error })?;
    let unusable = |reason: String| InstallError::Unusable { path: source.to_path_buf(), reason };
    let shape = ComponentShape::parse(&wasm).map_err(|e| unusable(e.to_string()))?;
    let worlds = shape.check_any(&[World::Provider, World::Validator, World::Login]).map_err(unusable)?;
    let target = dir.join(format!("{name}.wasm"));
    let mut unchanged = false;
    if let Ok(existing) = crate::fsutil::read_bounded(&target, crate::fsutil::bounds::PLUGIN) {
        let existing = sha256_hex(&existing);
        if existing == plugin.sha256 {
            unchanged = true;
        } else if !force {
            return Err(InstallError::Exists { path: target, existing });
        }
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| InstallError::Io { path, error }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if !unchanged {
        write_readable(dir, &target, &wasm).map_err(io(&target))?;
    }
    let signature_source = crate::signing::signature_path(source);
    let signature_target = crate::signing::signature_path(&target);
    let signature = match crate::fsutil::read_bounded(&signature_source, 64 * 1024) {
        Ok(bytes) => {
            write_readable(dir, &signature_target, &bytes).map_err(io(&signature_target))?;
            true
        }
        Err(_) => {
            // A stale signature of the replaced plugin must not stay behind.
            let _ = std::fs::remove_file(&signature_target);
            false
        }
    };
    Ok(Installed {
        shadows_bundled: bundled::find(&name).is_some(),
        name,
        path: target,
        sha256: plugin.sha256,
        worlds,
        signature,
        unchanged,
    })
}

/// Replace `path` atomically with `bytes`, mode 0644 on Unix (plugins are not
/// secret, but nobody else may change them); on Windows the file has its
/// directory's access list.
fn write_readable(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = tempfile::Builder::new().prefix(".install.").suffix(".tmp").tempfile_in(dir)?;
    file.write_all(bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    file.as_file().sync_data()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_plugins_describe_themselves() {
        let all = list(&[]);
        let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"static") && names.contains(&"token-file"), "{names:?}");
        let token_file = all.iter().find(|p| p.name == "token-file").unwrap();
        assert_eq!(token_file.source, Source::Bundled);
        assert_eq!(token_file.worlds(), [World::Validator]);
        assert_eq!(token_file.contract(), [(contract::VERSION.to_string(), Compatibility::Same)]);
        let caps: Vec<&str> = token_file.capabilities().iter().map(|c| c.interface).collect();
        assert!(caps.contains(&"files"), "{caps:?}");
        // Rust's std imports WASI's environment, which only grants.env fills.
        assert!(caps.contains(&"wasi:cli/environment"), "{caps:?}");
        assert!(token_file.foreign_imports().is_empty());
    }

    #[test]
    fn install_checks_then_copies_and_refuses_to_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("mine.wasm");
        std::fs::write(&source, bundled::find("static").unwrap().wasm).unwrap();
        let plugins = dir.path().join("plugins");
        let installed = install(&source, None, None, &plugins, false).unwrap();
        assert_eq!(installed.name, "mine");
        assert_eq!(installed.worlds, [World::Provider]);
        assert!(install(&source, None, None, &plugins, false).unwrap().unchanged);

        std::fs::write(&source, bundled::find("token-file").unwrap().wasm).unwrap();
        let clash = install(&source, None, None, &plugins, false).unwrap_err().to_string();
        assert!(clash.contains("pass --force"), "{clash}");
        let pinned = install(&source, None, Some(&"0".repeat(64)), &plugins, true).unwrap_err().to_string();
        assert!(pinned.contains("refusing to run it"), "{pinned}");

        std::fs::write(&source, b"\0asm\x01\0\0\0").unwrap();
        let module = install(&source, None, None, &plugins, true).unwrap_err().to_string();
        assert!(module.contains("core module"), "{module}");
        assert!(
            install(&source, Some("../evil"), None, &plugins, true)
                .unwrap_err()
                .to_string()
                .contains("not a plugin name")
        );
    }
}
