//! RFC 4515 escaping of user input placed into LDAP search filters:
//! `credbroker_sdk::ldap_filter::{escape, fill}`.
//!
//! Input: `TEMPLATE 0xFF VALUE` (0xFF never occurs in UTF-8, so it splits the
//! two), or just `VALUE` with the LDAP plugin's usual template.
//!
//! Checks that:
//! - `escape(value)` contains no raw `*`, `(`, `)` or NUL, every `\` starts a
//!   `\XX` hex escape, and unescaping gives back exactly the value's bytes;
//! - `fill(template, value)` adds no filter syntax: it has exactly the
//!   template's unescaped `(`, `)`, `*` and NUL, and it is the template with
//!   every `{}` replaced by the escaped value.
#![no_main]

use credbroker_sdk::ldap_filter::{escape, fill};
use libfuzzer_sys::fuzz_target;

const DEFAULT_TEMPLATE: &str = "(&(objectClass=person)(uid={}))";

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decode RFC 4515 `\XX` escapes; `None` on a `\` not followed by two hex digits.
fn unescape(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Count of each filter metacharacter outside `\XX` escapes: `(`, `)`, `*`, NUL.
fn syntax(text: &str) -> [usize; 4] {
    let bytes = text.as_bytes();
    let mut counts = [0; 4];
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                i += 3;
                continue;
            }
            b'(' => counts[0] += 1,
            b')' => counts[1] += 1,
            b'*' => counts[2] += 1,
            0 => counts[3] += 1,
            _ => {}
        }
        i += 1;
    }
    counts
}

fuzz_target!(|data: &[u8]| {
    let (template, value) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (DEFAULT_TEMPLATE.as_bytes(), data),
    };
    let (Ok(template), Ok(value)) = (std::str::from_utf8(template), std::str::from_utf8(value)) else { return };

    let escaped = escape(value);
    for special in ['*', '(', ')', '\0'] {
        assert!(!escaped.contains(special), "raw {special:?} in {escaped:?}");
    }
    let bytes = escaped.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\\' {
            assert!(
                bytes.len() > i + 2 && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit(),
                "`\\` not followed by two hex digits in {escaped:?}"
            );
        }
    }
    assert_eq!(unescape(&escaped).as_deref(), Some(value.as_bytes()), "unescaping does not give the value back");
    assert_eq!(syntax(&escaped), [0; 4]);

    let filled = fill(template, value);
    // The template is trusted and may itself contain `\XX` escapes. When every
    // piece between placeholders is well formed, no escape straddles a
    // placeholder and the metacharacters of the result are the template's.
    if template.split("{}").all(|p| unescape(p).is_some()) {
        let expected = template.split("{}").map(syntax).fold([0; 4], |mut acc, c| {
            for k in 0..4 {
                acc[k] += c[k];
            }
            acc
        });
        assert_eq!(syntax(&filled), expected, "fill({template:?}, {value:?}) = {filled:?} changes the filter syntax");
    }
    assert_eq!(filled, template.split("{}").collect::<Vec<_>>().join(&escaped));
    if !template.contains("{}") {
        assert_eq!(filled, template);
    }
});
