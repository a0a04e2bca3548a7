//! Where credbroker keeps its files, per the platform's conventions
//! (XDG on Linux): configuration, caches, installed plugins.

use std::path::PathBuf;

/// The user's credbroker directories.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// The default configuration file of `credbroker get`.
    pub config_file: PathBuf,
    /// The cache root: precompiled plugins and credentials.
    pub cache: PathBuf,
    /// Plugins installed by the user (`NAME.wasm`).
    pub plugins: PathBuf,
    /// Plugin-private persistent state.
    pub state: PathBuf,
    /// Plugins pulled from OCI registries (the plugin store).
    pub store: PathBuf,
}

impl Dirs {
    /// The directories of the current user. `CREDBROKER_CACHE_DIR` overrides
    /// the cache root.
    ///
    /// # Errors
    ///
    /// When no home directory can be determined.
    pub fn of_user() -> Result<Self, String> {
        let project = directories::ProjectDirs::from("", "", "credbroker")
            .ok_or_else(|| "cannot determine the home directory (is HOME set?)".to_string())?;
        let cache = std::env::var_os("CREDBROKER_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| project.cache_dir().to_path_buf());
        Ok(Self {
            config_file: project.config_dir().join("config.toml"),
            cache,
            plugins: project.data_dir().join("plugins"),
            state: project.data_dir().join("state"),
            store: project.data_dir().join("oci"),
        })
    }

    /// Precompiled plugin artifacts.
    pub fn artifacts(&self) -> PathBuf {
        self.cache.join("artifacts")
    }

    /// Where plugins come from: the installed plugin directory and the store.
    pub fn plugin_sources(&self) -> crate::plugin::prepare::PluginSources {
        crate::plugin::prepare::PluginSources {
            plugin_dirs: vec![self.plugins.clone()],
            store: crate::plugin::store::PluginStore::new(self.store.clone()),
        }
    }

    /// Cached credentials.
    pub fn credentials(&self) -> PathBuf {
        self.cache.join("credentials")
    }
}
