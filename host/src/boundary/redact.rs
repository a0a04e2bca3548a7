//! Secrets replaced by `[REDACTED]` wherever plugin text goes.
//!
//! The set of secrets of one run is bounded (count and bytes) and searched
//! with one Aho-Corasick automaton, so redacting a message costs time linear
//! in its length whatever the plugin marked. Each secret is also matched in
//! the forms it takes inside JSON strings and URL-encoded forms, where a
//! plugin that logs a request body would otherwise leak it.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

/// What secrets are replaced with.
pub const REDACTED: &str = "[REDACTED]";
/// Shorter secrets are not redacted: replacing every one- or two-letter
/// substring would garble the log without protecting anything.
pub const MIN_SECRET_LEN: usize = 3;
/// Most distinct secrets one run may hold (settings, marked values, prompted
/// answers, the token under review).
pub const MAX_SECRETS: usize = 256;
/// Most bytes of secrets (as marked, before their escaped forms) one run may hold.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// A run marked more secrets than [`MAX_SECRETS`] or [`MAX_SECRET_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("marked more than {MAX_SECRETS} secrets or {MAX_SECRET_BYTES} bytes of them")]
pub struct TooManySecrets;

/// The secrets known to one run and the automaton that finds them.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// The secrets as given, distinct.
    secrets: Vec<Arc<str>>,
    /// Their bytes.
    bytes: usize,
    /// Every form searched for (secrets and their escaped forms) and the
    /// longest of them in bytes, built on first use after a change.
    automaton: OnceLock<Built>,
}

/// The automaton of a set of secrets.
#[derive(Debug, Clone)]
enum Built {
    /// No secrets: nothing to search for.
    Empty,
    /// The automaton and the longest form it finds.
    Ready(Arc<AhoCorasick>, usize),
    /// The automaton could not be built (never seen within the bounds above):
    /// every text is withheld rather than shown unredacted.
    Broken,
}

/// The forms `secret` can take in what a plugin writes: as is, escaped inside
/// a JSON string, and URL-encoded (form bodies with `+`, query strings with `%20`).
fn forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json.trim_start_matches('"').trim_end_matches('"').to_string();
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let query = form.replace('+', "%20");
    for candidate in [json, form, query] {
        if !candidate.is_empty() && !forms.contains(&candidate) {
            forms.push(candidate);
        }
    }
    forms
}

impl Redactor {
    /// No secrets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `value`. Values shorter than [`MIN_SECRET_LEN`] and values already
    /// known are ignored.
    ///
    /// # Errors
    ///
    /// [`TooManySecrets`] when the run's secret budget would be exceeded: the
    /// value is not added, and the caller must stop the run rather than let
    /// the secret reach a log.
    pub fn add(&mut self, value: &str) -> Result<(), TooManySecrets> {
        if value.len() < MIN_SECRET_LEN || self.secrets.iter().any(|s| &**s == value) {
            return Ok(());
        }
        if self.secrets.len() >= MAX_SECRETS || self.bytes + value.len() > MAX_SECRET_BYTES {
            return Err(TooManySecrets);
        }
        self.bytes += value.len();
        self.secrets.push(value.into());
        self.automaton = OnceLock::new();
        Ok(())
    }

    /// How many secrets it knows.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether it knows none.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The longest text it replaces, in bytes: a stream that is redacted in
    /// pieces must keep this much minus one byte of overlap between them.
    pub fn longest(&self) -> usize {
        match self.built() {
            Built::Ready(_, longest) => *longest,
            Built::Empty | Built::Broken => 0,
        }
    }

    /// Bytes the secrets occupy, before their automaton is built.
    pub fn secret_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the automaton of the current secrets is built.
    pub fn is_built(&self) -> bool {
        self.automaton.get().is_some()
    }

    /// Bytes the automaton and the secrets occupy (for the run's memory
    /// account), building the automaton if it is not.
    pub fn memory_usage(&self) -> usize {
        self.automaton().map_or(0, |a| a.memory_usage()) + self.bytes
    }

    /// Give up searching until the next secret is added: every text is
    /// withheld (the automaton did not fit in the run's memory).
    pub fn withhold(&mut self) {
        self.automaton = OnceLock::from(Built::Broken);
    }

    fn built(&self) -> &Built {
        self.automaton.get_or_init(|| {
            if self.secrets.is_empty() {
                return Built::Empty;
            }
            let patterns: Vec<String> = self.secrets.iter().flat_map(|s| forms(s)).collect();
            let longest = patterns.iter().map(String::len).max().unwrap_or(0);
            // Leftmost-longest: where one secret contains another, the whole
            // of the longer one goes. A contiguous NFA, not the DFA the
            // builder picks for few patterns: for one JWT the DFA took 220 µs
            // and 360 KB to build, the NFA 36 µs and 10 KB, and the texts
            // searched are short (a message, a log line).
            let mut builder = AhoCorasickBuilder::new();
            builder.match_kind(MatchKind::LeftmostLongest).kind(Some(AhoCorasickKind::ContiguousNFA));
            match builder.build(&patterns) {
                Ok(automaton) => Built::Ready(Arc::new(automaton), longest),
                Err(_) => Built::Broken,
            }
        })
    }

    fn automaton(&self) -> Option<&AhoCorasick> {
        match self.built() {
            Built::Ready(automaton, _) => Some(automaton),
            Built::Empty | Built::Broken => None,
        }
    }

    /// `text` with every known secret (in any of its forms) replaced.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if matches!(self.built(), Built::Broken) {
            return Cow::Borrowed("[REDACTED: withheld, the run's secrets cannot be searched]");
        }
        match self.automaton() {
            Some(automaton) if automaton.is_match(text) => {
                let mut out = String::with_capacity(text.len());
                automaton.replace_all_with(text, &mut out, |_, _, out| {
                    out.push_str(REDACTED);
                    true
                });
                Cow::Owned(out)
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// The start of `text`, redacted, in about `max` bytes (what a bounded
    /// line shows), and how many bytes of `text` that covers. Only `max`
    /// bytes and the longest secret beyond them are searched, so the work is
    /// bounded whatever the length of `text`, and nothing past the covered
    /// part is shown, so a secret the search window cut in two never is.
    pub fn redact_prefix<'a>(&self, text: &'a str, max: usize) -> (Cow<'a, str>, usize) {
        let floor = |mut at: usize| {
            at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            at
        };
        if matches!(self.built(), Built::Broken) {
            return (Cow::Borrowed("[REDACTED: withheld, the run's secrets cannot be searched]"), text.len());
        }
        let Some(automaton) = self.automaton() else {
            let end = floor(max);
            return (Cow::Borrowed(&text[..end]), end);
        };
        let longest = self.longest();
        let window_end = floor(max.saturating_add(longest));
        // Past `safe`, a secret may run on beyond the window unseen.
        let safe = if window_end == text.len() { window_end } else { floor(window_end.saturating_sub(longest)) };
        let mut out = String::new();
        let mut at = 0;
        let copy = |out: &mut String, from: usize, to: usize| {
            let room = max.saturating_sub(out.len());
            let end = floor(to.min(from + room));
            out.push_str(&text[from..end.max(from)]);
            end.max(from)
        };
        for found in automaton.find_iter(&text[..window_end]) {
            if out.len() >= max || found.start() >= safe {
                break;
            }
            at = copy(&mut out, at, found.start());
            if at < found.start() {
                return (Cow::Owned(out), at);
            }
            out.push_str(REDACTED);
            at = found.end();
        }
        let end = copy(&mut out, at, safe);
        (Cow::Owned(out), end)
    }

    /// Where the last match in `text` that would be cut by splitting it at
    /// `at` ends: the split point that keeps it whole (`at` when none is cut).
    pub fn safe_split(&self, text: &str, at: usize) -> usize {
        let Some(automaton) = self.automaton() else { return at };
        let mut split = at;
        for found in automaton.find_iter(text) {
            if found.start() < at && found.end() > at {
                split = found.end();
            }
            if found.start() >= at {
                break;
            }
        }
        split
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_longest_first_in_every_form() {
        let mut redactor = Redactor::new();
        for secret in ["hunter2", "hunter2-extended", "ab", "p\"w d&x"] {
            redactor.add(secret).unwrap();
        }
        assert_eq!(redactor.redact("pw=hunter2-extended ab"), "pw=[REDACTED] ab");
        assert_eq!(redactor.redact(r#"{"password":"p\"w d&x"}"#), r#"{"password":"[REDACTED]"}"#);
        assert_eq!(redactor.redact("password=p%22w+d%26x&user=a"), "password=[REDACTED]&user=a");
        assert_eq!(redactor.redact("?pw=p%22w%20d%26x"), "?pw=[REDACTED]");
        assert!(matches!(redactor.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_set_is_bounded() {
        let mut redactor = Redactor::new();
        for i in 0..MAX_SECRETS {
            redactor.add(&format!("secret-{i}")).unwrap();
        }
        redactor.add("secret-7").unwrap();
        assert_eq!(redactor.add("one-too-many"), Err(TooManySecrets));
        let mut big = Redactor::new();
        assert_eq!(big.add(&"x".repeat(MAX_SECRET_BYTES + 1)), Err(TooManySecrets));
    }

    #[test]
    fn prefixes_cover_only_what_was_searched() {
        let mut redactor = Redactor::new();
        let long = "L".repeat(100);
        redactor.add(&long).unwrap();
        redactor.add("short").unwrap();
        // A long secret collapses to [REDACTED], pulling later text forward:
        // a second one cut by the search window must not show.
        let text = format!("{long}{}{long}", "x".repeat(60));
        let (shown, covered) = redactor.redact_prefix(&text, 80);
        assert!(!shown.contains('L'), "{shown}");
        assert!(covered <= text.len());
        let (shown, covered) = redactor.redact_prefix("a short b", 1000);
        assert_eq!((shown.as_ref(), covered), ("a [REDACTED] b", 9));
        let huge = "z".repeat(10_000_000);
        let started = std::time::Instant::now();
        let (shown, _) = redactor.redact_prefix(&huge, 4096);
        assert!(shown.len() <= 4096 && started.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn splits_do_not_cut_a_secret() {
        let mut redactor = Redactor::new();
        redactor.add("s3cr3t-value").unwrap();
        let text = "abc s3cr3t-value def";
        assert_eq!(redactor.safe_split(text, 8), 16);
        assert_eq!(redactor.safe_split(text, 2), 2);
        assert_eq!(redactor.safe_split(text, 17), 17);
    }
}
