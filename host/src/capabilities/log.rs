//! `log`: levelled plugin logging into the host's log, redacted, escaped and
//! bounded by the run's output channel (see [`crate::boundary::output`]).
//! Always granted.

use std::sync::Arc;

use wasmtime::component::Linker;

use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::bindings::log::{Host, Level, add_to_linker};
use crate::boundary::output::SecretError;
use crate::boundary::wire::WireSize;
use crate::boundary::{CapView, ViewOf};
use crate::limits::LimitExceeded;

/// The `log` capability.
pub struct Log;

/// A run's logging: everything lives in the run's output channel.
pub struct Logging;

impl Capability for Log {
    const INTERFACE: &'static str = "log";
    const WHAT: &'static str = "write to the host's log (redacted, bounded)";
    const GRANT: &'static str = "always granted";
    type Policy = ();
    type State = Logging;

    fn configure(_: &mut GrantTable, _: &PluginSetup) -> Result<(), GrantError> {
        Ok(())
    }

    fn prepare(_: &Arc<()>) -> Logging {
        Logging
    }

    fn link(
        linker: &mut Linker<HostState>,
        view: fn(&mut HostState) -> CapView<'_, Self::State>,
    ) -> wasmtime::Result<()> {
        add_to_linker::<HostState, ViewOf<Self::State>>(linker, view)
    }
}

impl From<SecretError> for LimitExceeded {
    fn from(error: SecretError) -> Self {
        match error {
            SecretError::TooMany(_) => Self::Secrets,
            SecretError::Memory(limit) => limit,
        }
    }
}

impl Host for CapView<'_, Logging> {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.call_or_trap("log.log", message.wire_size() + 1, async |_, boundary| {
            boundary.output().log(level, "log", &message);
            Ok(())
        })
        .await
    }

    async fn enabled(&mut self, level: Level) -> wasmtime::Result<bool> {
        Ok(match level {
            Level::Trace => tracing::enabled!(target: "credbroker::plugin", tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: "credbroker::plugin", tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: "credbroker::plugin", tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: "credbroker::plugin", tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: "credbroker::plugin", tracing::Level::ERROR),
        })
    }

    async fn mark_secret(&mut self, value: String) -> wasmtime::Result<()> {
        self.call_or_trap("log.mark-secret", value.wire_size(), async |_, boundary| {
            // A secret the host cannot keep could reach a log later: stop the run.
            boundary.output().mark_secret(&value).map_err(|e| LimitExceeded::from(e).into())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::Run;

    #[tokio::test]
    async fn secrets_are_bounded_and_charged() {
        let mut run = Run::builder().limits(|l| l.memory_mib = 4).build();
        let mut view = run.view::<Log>();
        view.mark_secret("tok-123".into()).await.unwrap();
        assert_eq!(view.boundary.output().clean("bearer tok-123"), "bearer [REDACTED]");
        let mut stopped = None;
        for i in 0..1000 {
            if let Err(e) = view.mark_secret(format!("{i:06}-{}", "s".repeat(64 * 1024))).await {
                stopped = Some(e.to_string());
                break;
            }
        }
        let stopped = stopped.expect("the host does not keep unbounded secrets");
        assert!(stopped.contains("memory limit of 4 MiB") || stopped.contains("secrets"), "{stopped}");
        assert!(run.memory.held() <= 4 * 1024 * 1024);
    }

    #[tokio::test]
    async fn messages_over_the_call_limit_stop_the_plugin() {
        let mut run = Run::builder().limits(|l| l.max_call_bytes = 100).build();
        let mut view = run.view::<Log>();
        view.log(Level::Info, "short".into()).await.unwrap();
        let trap = view.log(Level::Info, "x".repeat(200)).await.unwrap_err().to_string();
        assert!(trap.contains("`log.log`"), "{trap}");
    }
}
