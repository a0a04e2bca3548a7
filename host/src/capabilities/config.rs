//! `config`: the plugin's own settings. Always granted.

use std::sync::Arc;

use wasmtime::component::Linker;

use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::bindings::config::{Host, add_to_linker};
use crate::boundary::wire::WireSize;
use crate::boundary::{CapView, ViewOf};
use crate::settings::ResolvedSettings;

/// The `config` capability.
pub struct Config;

/// One run's view of the settings.
pub struct Settings(Arc<ResolvedSettings>);

impl Capability for Config {
    const INTERFACE: &'static str = "config";
    const WHAT: &'static str = "read its own settings";
    const GRANT: &'static str = "always granted";
    type Policy = Arc<ResolvedSettings>;
    type State = Settings;

    fn configure(_: &mut GrantTable, plugin: &PluginSetup) -> Result<Self::Policy, GrantError> {
        Ok(Arc::clone(&plugin.settings))
    }

    fn prepare(policy: &Arc<Self::Policy>) -> Self::State {
        Settings(Arc::clone(policy))
    }

    fn link(
        linker: &mut Linker<HostState>,
        view: fn(&mut HostState) -> CapView<'_, Self::State>,
    ) -> wasmtime::Result<()> {
        add_to_linker::<HostState, ViewOf<Self::State>>(linker, view)
    }
}

impl Host for CapView<'_, Settings> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.call_or_trap("config.get", key.wire_size(), async |settings, _| {
            Ok(settings.0.get(&key).map(str::to_string))
        })
        .await
    }

    async fn keys(&mut self) -> wasmtime::Result<Vec<String>> {
        self.call_or_trap("config.keys", 0, async |settings, _| {
            Ok(settings.0.iter().map(|(k, _)| k.to_string()).collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::Run;

    #[tokio::test]
    async fn settings_are_served_within_the_call_limit() {
        let settings = ResolvedSettings::resolve(
            &[("url".to_string(), "https://x".to_string()), ("big".to_string(), "b".repeat(2000))].into(),
        )
        .unwrap();
        let mut run = Run::builder().limits(|l| l.max_call_bytes = 1024).settings(settings).build();
        let mut view = run.view::<Config>();
        assert_eq!(view.get("url".into()).await.unwrap().as_deref(), Some("https://x"));
        assert_eq!(view.get("nope".into()).await.unwrap(), None);
        assert_eq!(view.keys().await.unwrap(), ["big", "url"]);
        let trap = view.get("big".into()).await.unwrap_err().to_string();
        assert!(
            trap.contains("through `config.get`, over its per-call limit (max-call-bytes) of 1024 bytes"),
            "{trap}"
        );
    }
}
