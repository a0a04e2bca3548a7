//! Everything a plugin says that a person may read: log lines, its stdout and
//! stderr, prompts and messages for the terminal, and its errors. One channel,
//! so every such text is redacted, sanitized and bounded the same way, and all
//! of it counts against the run's `log-bytes`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::memory::{Held, MemoryAccount};
use super::redact::{Redactor, TooManySecrets};
use super::text;
use crate::bindings::log::Level;

/// Longest log line kept, in bytes (longer ones are cut).
pub const MAX_LINE: usize = 4096;
/// Longest error message or rejection reason passed on, in bytes.
pub const MAX_MESSAGE: usize = 4096;
/// Longest message or question shown on the terminal, in bytes.
pub const MAX_TERMINAL: usize = 16 * 1024;
/// Lines of the plugin's stderr kept to explain a crash.
const STDERR_TAIL: usize = 8;

struct State {
    plugin: Arc<str>,
    redactor: Redactor,
    /// The memory the redactor's automaton and secrets occupy.
    secrets_held: Option<Held>,
    memory: MemoryAccount,
    budget: usize,
    used: usize,
    suppressed: bool,
    stderr_tail: VecDeque<String>,
}

impl State {
    /// Hold `bytes` of the run's memory for the secrets and their automaton.
    fn hold_secrets(&mut self, bytes: usize) -> Result<(), crate::limits::LimitExceeded> {
        match &mut self.secrets_held {
            Some(held) => held.resize(bytes),
            None => {
                self.secrets_held = Some(self.memory.hold(bytes)?);
                Ok(())
            }
        }
    }

    /// The redactor with its automaton built and charged to the run's
    /// memory; one that does not fit withholds every text instead.
    fn redactor(&mut self) -> &Redactor {
        if !self.redactor.is_built() {
            let bytes = self.redactor.memory_usage();
            if self.hold_secrets(bytes).is_err() {
                self.redactor.withhold();
            }
        }
        &self.redactor
    }
}

/// One run's output channel. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct PluginOutput {
    inner: Arc<Mutex<State>>,
}

impl PluginOutput {
    /// The channel of `plugin`, with `budget` bytes and the run's known secrets.
    pub fn new(plugin: Arc<str>, budget: usize, redactor: Redactor, memory: MemoryAccount) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                plugin,
                redactor,
                secrets_held: None,
                memory,
                budget,
                used: 0,
                suppressed: false,
                stderr_tail: VecDeque::new(),
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-log; the
        // state is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The plugin's name.
    pub fn plugin(&self) -> Arc<str> {
        Arc::clone(&self.state().plugin)
    }

    /// Declare `value` secret from now on.
    ///
    /// # Errors
    ///
    /// [`SecretError`] when the run's secret budget or memory is exhausted:
    /// the run must stop, since the value could no longer be kept out of logs.
    pub fn mark_secret(&self, value: &str) -> Result<(), SecretError> {
        let mut state = self.state();
        state.redactor.add(value)?;
        // The secrets now, their automaton when a text is first searched.
        let bytes = state.redactor.secret_bytes();
        state.hold_secrets(bytes)?;
        Ok(())
    }

    /// The longest text the redactor replaces.
    pub fn longest_secret(&self) -> usize {
        self.state().redactor().longest()
    }

    /// Where to split `text` near `at` so no secret is cut in two.
    pub fn safe_split(&self, text: &str, at: usize) -> usize {
        self.state().redactor().safe_split(text, at)
    }

    /// `text` with secrets redacted.
    pub fn redact(&self, text: &str) -> String {
        self.state().redactor().redact(text).into_owned()
    }

    /// The part of `text` that can show in `max` bytes, redacted: only that
    /// much (and the longest secret beyond it) is searched, so the host's
    /// work per message is bounded whatever the plugin sends.
    fn shown_part<'a>(state: &mut State, text: &'a str, max: usize) -> (Cow<'a, str>, usize) {
        let (shown, covered) = state.redactor().redact_prefix(text, max);
        (shown, text.len() - covered)
    }

    fn bounded(line: &str, max: usize, cut: usize) -> String {
        let shown = text::truncate(line, max);
        match (shown, cut) {
            (shown, 0) => shown.into_owned(),
            (Cow::Borrowed(shown), cut) => format!("{shown}… [{cut} more bytes cut]"),
            (Cow::Owned(shown), _) => shown,
        }
    }

    /// `text` fit for an error message or a log field: redacted, on one line
    /// with unsafe characters escaped, at most [`MAX_MESSAGE`] bytes.
    pub fn clean(&self, text: &str) -> String {
        let mut state = self.state();
        let (redacted, cut) = Self::shown_part(&mut state, text, MAX_MESSAGE);
        Self::bounded(&text::one_line(&redacted), MAX_MESSAGE, cut)
    }

    fn charge(state: &mut State, bytes: usize) -> bool {
        if state.suppressed {
            return false;
        }
        state.used = state.used.saturating_add(bytes);
        if state.used > state.budget {
            state.suppressed = true;
            let (budget, plugin) = (state.budget, Arc::clone(&state.plugin));
            tracing::warn!(target: "credbroker::plugin", %plugin, "output over {budget} bytes (log-bytes); further log lines and messages from this run are dropped");
            return false;
        }
        true
    }

    /// Log one message from the plugin (`source`: `log`, `stdout`, `stderr`).
    pub fn log(&self, level: Level, source: &str, message: &str) {
        let mut state = self.state();
        let (redacted, cut) = Self::shown_part(&mut state, message, MAX_LINE);
        let line = Self::bounded(&text::one_line(&redacted), MAX_LINE, cut);
        if source == "stderr" && !line.trim().is_empty() {
            if state.stderr_tail.len() == STDERR_TAIL {
                state.stderr_tail.pop_front();
            }
            state.stderr_tail.push_back(line.clone());
        }
        if !Self::charge(&mut state, line.len()) {
            return;
        }
        let plugin = Arc::clone(&state.plugin);
        drop(state);
        match level {
            Level::Trace => tracing::trace!(target: "credbroker::plugin", %plugin, source, "{line}"),
            Level::Debug => tracing::debug!(target: "credbroker::plugin", %plugin, source, "{line}"),
            Level::Info => tracing::info!(target: "credbroker::plugin", %plugin, source, "{line}"),
            Level::Warn => tracing::warn!(target: "credbroker::plugin", %plugin, source, "{line}"),
            Level::Error => tracing::error!(target: "credbroker::plugin", %plugin, source, "{line}"),
        }
    }

    /// `message` made fit for the terminal (redacted, lines kept, other
    /// unsafe characters escaped, at most [`MAX_TERMINAL`] bytes), charged to
    /// the run's output budget; `None` once the budget is spent.
    pub fn for_terminal(&self, message: &str) -> Option<String> {
        let mut state = self.state();
        let (redacted, cut) = Self::shown_part(&mut state, message, MAX_TERMINAL);
        let shown = Self::bounded(&text::multi_line(&redacted), MAX_TERMINAL, cut);
        Self::charge(&mut state, shown.len()).then_some(shown)
    }

    /// The last lines the plugin wrote to stderr (redacted), e.g. a panic message.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.state().stderr_tail.iter().cloned().collect()
    }
}

/// A secret that cannot be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Too many secrets or secret bytes.
    #[error(transparent)]
    TooMany(#[from] TooManySecrets),
    /// The run's memory is exhausted.
    #[error(transparent)]
    Memory(#[from] crate::limits::LimitExceeded),
}

/// A secret-free, one-line rendering of `text` for the host's own messages
/// about a plugin, when no run's channel is at hand.
pub fn clean_without_secrets(text: &str) -> Cow<'_, str> {
    match text::one_line(text) {
        Cow::Borrowed(line) => text::truncate(line, MAX_MESSAGE),
        Cow::Owned(line) => Cow::Owned(text::truncate(&line, MAX_MESSAGE).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    fn output(budget: usize) -> PluginOutput {
        PluginOutput::new("p".into(), budget, Redactor::new(), MemoryAccount::new(&Limits::default()))
    }

    #[test]
    fn every_channel_redacts_escapes_and_bounds() {
        let out = output(1 << 20);
        out.mark_secret("tok-123").unwrap();
        assert_eq!(out.clean("bearer tok-123\x1b[2J\r\nINFO fake"), "bearer [REDACTED]\\x1b[2J\\r\\nINFO fake");
        assert_eq!(
            out.for_terminal("line one\nline two tok-123 \u{202e}").unwrap(),
            "line one\nline two [REDACTED] \\u{202e}"
        );
        assert!(out.clean(&"x".repeat(10 * MAX_MESSAGE)).len() < MAX_MESSAGE + 64);
    }

    #[test]
    fn the_terminal_shares_the_output_budget() {
        let out = output(100);
        assert!(out.for_terminal(&"m".repeat(60)).is_some());
        assert!(out.for_terminal(&"m".repeat(60)).is_none(), "over log-bytes");
    }

    #[test]
    fn secrets_are_charged_to_the_run_memory() {
        let memory = MemoryAccount::new(&Limits { memory_mib: 1, ..Limits::default() });
        let out = PluginOutput::new("p".into(), 1024, Redactor::new(), memory.clone());
        out.mark_secret(&"s".repeat(1000)).unwrap();
        assert!(memory.held() >= 1000);
        let mut failed = false;
        for i in 0..200 {
            if out.mark_secret(&format!("{i:04}{}", "y".repeat(8 * 1024))).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "1 MiB of memory cannot hold 1.6 MiB of secrets");
    }

    #[test]
    fn the_automaton_is_built_and_charged_when_a_text_is_searched() {
        let memory = MemoryAccount::new(&Limits { memory_mib: 1, ..Limits::default() });
        let out = PluginOutput::new("p".into(), 1 << 20, Redactor::new(), memory.clone());
        out.mark_secret("tok-123").unwrap();
        assert_eq!(memory.held(), "tok-123".len(), "only the secret until a text is searched");
        assert_eq!(out.clean("bearer tok-123"), "bearer [REDACTED]");
        assert!(memory.held() > "tok-123".len(), "the automaton is charged once built");
        // Secrets that fit, whose automaton does not: every text is withheld.
        for i in 0..100 {
            out.mark_secret(&format!("{i:04}-{}", "z".repeat(8 * 1024))).unwrap();
        }
        assert!(out.clean("bearer tok-123").contains("withheld"), "{}", out.clean("bearer tok-123"));
        assert!(memory.held() <= 1024 * 1024);
    }
}
