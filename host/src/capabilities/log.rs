//! `log`: levelled plugin logging into the host's log, bounded and redacted.
//!
//! Also the sink for a plugin's WASI stdout and stderr, which therefore never
//! reach the host's stdout (the channel kubectl reads the credential from).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{PluginContext, sanitize};
use crate::runtime::bindings::log::{Host, Level};

/// Longest single log line kept, in bytes.
const MAX_LINE: usize = 4096;
/// Lines of the plugin's stderr kept to explain a crash.
const STDERR_TAIL: usize = 8;
/// What secrets are replaced with.
pub const REDACTED: &str = "[REDACTED]";
/// Shorter secrets are not redacted: replacing every one- or two-letter
/// substring would garble the log without protecting anything.
const MIN_SECRET_LEN: usize = 3;

/// A plugin run's log: redacts secrets, sanitises control characters, and stops
/// after the run's byte budget. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct PluginLog {
    inner: Arc<Mutex<LogState>>,
}

struct LogState {
    plugin: Arc<str>,
    secrets: Vec<String>,
    budget: usize,
    used: usize,
    suppressed: bool,
    stderr_tail: VecDeque<String>,
}

impl PluginLog {
    /// A log for `plugin` with `budget` bytes and the given known secrets.
    pub fn new(plugin: Arc<str>, budget: usize, secrets: &[String]) -> Self {
        let mut state =
            LogState { plugin, secrets: Vec::new(), budget, used: 0, suppressed: false, stderr_tail: VecDeque::new() };
        for secret in secrets {
            state.add_secret(secret);
        }
        Self { inner: Arc::new(Mutex::new(state)) }
    }

    fn state(&self) -> MutexGuard<'_, LogState> {
        // A poisoned lock only means another thread panicked mid-log; the state
        // is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Redact every known secret from `text`.
    pub fn redact(&self, text: &str) -> String {
        self.state().redact(text)
    }

    /// Declare `value` secret from now on.
    pub fn mark_secret(&self, value: &str) {
        self.state().add_secret(value);
    }

    /// Log one message from the plugin.
    pub fn emit(&self, level: Level, source: &str, message: &str) {
        let mut state = self.state();
        let line = state.prepare(message);
        if source == "stderr" && !line.trim().is_empty() {
            if state.stderr_tail.len() == STDERR_TAIL {
                state.stderr_tail.pop_front();
            }
            state.stderr_tail.push_back(line.clone());
        }
        if state.suppressed {
            return;
        }
        state.used += line.len();
        if state.used > state.budget {
            state.suppressed = true;
            let budget = state.budget;
            let plugin = state.plugin.clone();
            drop(state);
            tracing::warn!(target: "credbroker::plugin", %plugin, "log output over {budget} bytes; further messages from this run are dropped");
            return;
        }
        let plugin = state.plugin.clone();
        drop(state);
        match level {
            Level::Trace => {
                tracing::trace!(target: "credbroker::plugin", %plugin, source, "{line}")
            }
            Level::Debug => {
                tracing::debug!(target: "credbroker::plugin", %plugin, source, "{line}")
            }
            Level::Info => tracing::info!(target: "credbroker::plugin", %plugin, source, "{line}"),
            Level::Warn => tracing::warn!(target: "credbroker::plugin", %plugin, source, "{line}"),
            Level::Error => {
                tracing::error!(target: "credbroker::plugin", %plugin, source, "{line}")
            }
        }
    }

    /// The last lines the plugin wrote to stderr (redacted), e.g. a panic message.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.state().stderr_tail.iter().cloned().collect()
    }
}

impl LogState {
    fn add_secret(&mut self, value: &str) {
        if value.len() >= MIN_SECRET_LEN && !self.secrets.iter().any(|s| s == value) {
            self.secrets.push(value.to_string());
            // Longest first, so a secret that contains another is removed whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    fn prepare(&self, message: &str) -> String {
        let mut end = message.len().min(MAX_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        // Redact before truncating, so a secret cut in half still goes; then
        // sanitise so the plugin cannot send escape sequences to a terminal.
        let redacted = self.redact(message);
        let truncated = if redacted.len() > end {
            let mut cut = end.min(redacted.len());
            while !redacted.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}… [truncated]", &redacted[..cut])
        } else {
            redacted
        };
        sanitize(&truncated, false)
    }
}

impl Host for PluginContext {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.log.emit(level, "log", &message);
        Ok(())
    }

    async fn enabled(&mut self, level: Level) -> wasmtime::Result<bool> {
        let enabled = match level {
            Level::Trace => tracing::enabled!(target: "credbroker::plugin", tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: "credbroker::plugin", tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: "credbroker::plugin", tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: "credbroker::plugin", tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: "credbroker::plugin", tracing::Level::ERROR),
        };
        Ok(enabled)
    }

    async fn mark_secret(&mut self, value: String) -> wasmtime::Result<()> {
        if value.len() as u64 <= self.limits.max_call_bytes {
            self.log.mark_secret(&value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_longest_first() {
        let log = PluginLog::new("p".into(), 1024, &["hunter2".into(), "hunter2-extended".into(), "ab".into()]);
        assert_eq!(log.redact("pw=hunter2-extended ab"), "pw=[REDACTED] ab");
        log.mark_secret("tok-123");
        assert_eq!(log.redact("bearer tok-123"), "bearer [REDACTED]");
    }

    #[test]
    fn lines_are_bounded_and_sanitised() {
        let log = PluginLog::new("p".into(), 1024, &[]);
        let state = log.state();
        let long = "x".repeat(MAX_LINE * 2);
        assert!(state.prepare(&long).ends_with("… [truncated]"));
        assert_eq!(state.prepare("a\x1b[2Jb\nc"), "a\u{FFFD}[2Jb\u{FFFD}c");
    }
}
