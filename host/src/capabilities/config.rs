//! `config`: the plugin's own settings. Always granted.

use super::PluginContext;
use crate::runtime::bindings::config::Host;

impl Host for PluginContext {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.settings.get(&key).map(str::to_string))
    }

    async fn keys(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.settings.iter().map(|(k, _)| k.to_string()).collect())
    }
}
