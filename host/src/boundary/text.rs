//! Plugin-supplied text made safe for terminals and logs.
//!
//! Whatever a plugin hands the host to show (log lines, its stdout and
//! stderr, prompts, messages, errors, rejection reasons) may try to drive the
//! terminal that finally displays it: ANSI escape sequences (clear the screen,
//! set the window title, move the cursor), a carriage return that overwrites
//! the start of a line with something else, bidirectional overrides that make
//! `evil` read as `live`, invisible characters that make two different names
//! look alike, line separators that fake a new log line. Every such character
//! is replaced by a visible escape (`\x1b`, `\r`, `\u{202e}`), the same way on
//! every channel, so the reader sees that something odd was sent instead of
//! having their terminal obey it.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal or a log line as it is: C0 and C1
/// controls, DEL, Unicode format characters (bidi controls, zero-width and
/// invisible characters, tags), line and paragraph separators, and the
/// Hangul fillers that render as blanks.
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // General category Cf (format), Unicode 15.
        | '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}' | '\u{890}'..='\u{891}'
        | '\u{8e2}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
        | '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}' | '\u{e0001}' | '\u{e0020}'..='\u{e007f}'
        // Line and paragraph separators (Zl, Zp): new lines to some viewers.
        | '\u{2028}' | '\u{2029}'
        // Characters that render as nothing at all.
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}')
}

fn escape_into(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) && !keep(c) {
            escape_into(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` as one line: every unsafe character escaped, newlines and tabs too.
/// For log lines and error messages.
pub fn one_line(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// `text` keeping its line structure (newlines and tabs) with every other
/// unsafe character escaped. For messages shown to the user in a frame.
pub fn multi_line(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

/// `text` cut to at most `max` bytes (at a character boundary), saying how
/// much was cut.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… [{} more bytes cut]", &text[..end], text.len() - end))
}

/// Whether `name` (of a profile, validator, plugin) can be shown as it is:
/// not empty, no unsafe characters, no surrounding whitespace.
pub fn is_clean_name(name: &str) -> bool {
    !name.is_empty() && name.trim() == name && !name.chars().any(is_unsafe)
}

/// A name from the command line or a file, fit to echo in a message: quoted
/// escapes where it is not clean.
pub fn name(name: &str) -> Cow<'_, str> {
    one_line(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_become_visible_escapes() {
        assert_eq!(one_line("a\x1b]0;title\x07\x1b[2J\rb"), "a\\x1b]0;title\\x07\\x1b[2J\\rb");
        assert_eq!(one_line("two\nlines\ttab"), "two\\nlines\\ttab");
        assert_eq!(multi_line("two\nlines\ttab\x1b[1m"), "two\nlines\ttab\\x1b[1m");
        assert_eq!(one_line("\u{9b}31m c1 \u{7f}"), "\\u{9b}31m c1 \\x7f");
        // Bidi overrides, zero-width and invisible characters, separators, tags.
        assert_eq!(one_line("ad\u{202e}nimda"), "ad\\u{202e}nimda");
        assert_eq!(one_line("a\u{200b}b\u{2066}c\u{feff}d"), "a\\u{200b}b\\u{2066}c\\u{feff}d");
        assert_eq!(one_line("x\u{2028}INFO fake"), "x\\u{2028}INFO fake");
        assert_eq!(one_line("\u{e0041}\u{3164}"), "\\u{e0041}\\u{3164}");
        // Ordinary text, accents, CJK and emoji pass unchanged (and unallocated).
        assert!(matches!(one_line("héllo 世界 🔑"), Cow::Borrowed(_)));
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("aéb", 2), "a… [3 more bytes cut]");
    }

    #[test]
    fn names_must_be_clean() {
        assert!(is_clean_name("corp-ldap"));
        assert!(is_clean_name("we\"ird\\name"));
        for bad in ["", " x", "evil\nINFO fake", "a\x1b[2J", "ad\u{202e}min"] {
            assert!(!is_clean_name(bad), "{bad:?}");
        }
        assert_eq!(name("evil\nINFO fake log line"), "evil\\nINFO fake log line");
    }
}
