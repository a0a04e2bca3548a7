//! The `token-file` validator: static tokens in kube-apiserver's
//! `--token-auth-file` format, one per line:
//!
//! ```text
//! token,user,uid,"group1,group2"
//! ```
//!
//! The groups column is optional. Blank lines and lines starting with `#` are
//! skipped. The file is read, checked and indexed once per load, in
//! `validator-setup` (a broken line is a load error), into the host's `table`
//! (contract 0.1.5): the SHA-256 of each token, and its user, uid and groups.
//! The text is not kept, so the image every review starts from is small, and a
//! review looks its token up in one hash probe in the host whatever the file's
//! size, like kube-apiserver's own `--token-auth-file`. `credbroker serve`
//! watches the granted file and reloads when it changes.
//!
//! Settings: `path` (required), the CSV file; grant it under `grants.files`.
//! The whole file passes through one host call: raise the validator's
//! `max-call-bytes` to its size (and `memory-mib` to about three times that:
//! the text, and the table, which counts against the setup's memory).

use std::borrow::Cow;
use std::sync::OnceLock;

use credbroker_sdk::{Error, ReviewOutcome, TokenReview, UserInfo, Validator, config, files, table};
use sha2::{Digest, Sha256};

/// One line of the file, borrowing from the file's text where it can (the
/// validator checks every line on every review, so lines are not copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The bearer token.
    pub token: Cow<'a, str>,
    /// User name.
    pub user: Cow<'a, str>,
    /// User uid.
    pub uid: Cow<'a, str>,
    /// The groups column as written (comma-separated).
    groups: Cow<'a, str>,
}

impl Entry<'_> {
    /// The groups, in file order, without blanks.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.split(',').map(str::trim).filter(|g| !g.is_empty())
    }
}

/// The first four fields of one CSV line (later ones are checked, then
/// ignored) and how many fields there are, honouring double quotes (`""` is a
/// quote). Fields without an escaped quote borrow from `line`; nothing is
/// allocated for them.
fn fields(line: &str) -> Result<([Cow<'_, str>; 4], usize), String> {
    let mut out: [Cow<'_, str>; 4] = Default::default();
    let mut count = 0;
    let mut rest = line;
    loop {
        // Fast paths, exactly what the character loop below gives for them:
        // an unquoted field, or a quoted one closed right before a comma or
        // the end of the line.
        let (field, after) = if let Some(body) = rest.strip_prefix('"') {
            match body.find('"') {
                Some(at) if matches!(body.as_bytes().get(at + 1), None | Some(b',')) => (&body[..at], &body[at + 1..]),
                _ => break,
            }
        } else {
            rest.split_at(rest.find(',').unwrap_or(rest.len()))
        };
        if let Some(slot) = out.get_mut(count) {
            *slot = Cow::Borrowed(field);
        }
        count += 1;
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None => return Ok((out, count)),
        }
    }
    for field in fields_slow(rest)? {
        if let Some(slot) = out.get_mut(count) {
            *slot = Cow::Owned(field);
        }
        count += 1;
    }
    Ok((out, count))
}

/// The general case of [`fields`], one character at a time.
fn fields_slow(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) if field.is_empty() => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("an unterminated quote".into());
    }
    fields.push(field);
    Ok(fields)
}

/// Every entry of the file, in order, or the first bad line.
fn entries(text: &str) -> impl Iterator<Item = Result<Entry<'_>, String>> {
    let mut lines = Lines { text, at: 0, number: 0 };
    std::iter::from_fn(move || {
        loop {
            let entry = match lines.next()? {
                Line::Simple(fields, count) => simple_entry(text, &fields, count).map_err(String::from),
                Line::Other(line) => match general_line(line) {
                    None => continue,
                    Some(entry) => entry,
                },
            };
            return Some(entry.map_err(|what| lines.bad(&what)));
        }
    })
}

/// One line of a token file, as [`scan_line`] found it.
enum Line<'a> {
    /// A simple line (quotes, if any, only around whole fields, and no `""`
    /// escapes) that is not blank or a comment: its first four fields, as
    /// offsets in the text, and how many there are.
    Simple([(usize, usize); 4], usize),
    /// Any other line, without trailing `\r`s, for the general rules of
    /// [`general_line`].
    Other(&'a str),
}

/// The lines of a token file. One pass over each line's bytes, a word at a
/// time, finds its end and, for a simple line, its fields. The validator reads
/// the whole file on every review, so this loop is its cost.
struct Lines<'a> {
    text: &'a str,
    /// Byte offset of the next line.
    at: usize,
    /// Number of the line last read (1-based).
    number: usize,
}

impl Lines<'_> {
    /// `what` is wrong with the line last read.
    fn bad(&self, what: &str) -> String {
        format!("line {}: {what}", self.number)
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let start = self.at;
        if start >= self.text.len() {
            return None;
        }
        let scan = scan_line(self.text.as_bytes(), start);
        self.at = scan.newline + 1;
        self.number += 1;
        Some(match scan.fields {
            Some((fields, count)) => Line::Simple(fields, count),
            None => Line::Other(&self.text[start..scan.end]),
        })
    }
}

/// What one pass over a line found.
struct LineScan {
    /// Offset of the line's `\n` (or the end of the text).
    newline: usize,
    /// Offset of the line's end without trailing `\r`s.
    end: usize,
    /// For a simple line that is not blank or a comment: the first four
    /// fields (as offsets in the text) and how many there are.
    fields: Option<([(usize, usize); 4], usize)>,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `word` equal to `byte` (exactly: no false
/// positives, unlike the quicker zero-byte test).
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let zeroed = word ^ (ONES * u64::from(byte));
    !(((zeroed & LOW7) + LOW7) | zeroed) & HIGHS
}

/// The eight bytes at `at` as a little-endian word, zero-padded past the end.
fn word_at(bytes: &[u8], at: usize) -> u64 {
    match bytes.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        Some(chunk) => u64::from_le_bytes(*chunk),
        None => bytes.get(at..).unwrap_or_default().iter().rev().fold(0, |word, &b| (word << 8) | u64::from(b)),
    }
}

/// Scan the line starting at `start`, eight bytes at a time, stopping only at
/// the bytes that matter (`\n`, `,`, `"`).
///
/// A byte-at-a-time loop was most of a review's cost in wasm: the compiler
/// keeps few of its values in registers and checks the CPU-time deadline on
/// every iteration. A word at a time does both once per eight bytes.
#[inline(never)]
fn scan_line(bytes: &[u8], start: usize) -> LineScan {
    let mut fields = [(0, 0); 4];
    let mut count = 0;
    let mut field_start = start;
    // An opening quote at the start of the field, not yet closed.
    let mut open_quote = false;
    // Where the current field's closing quote is, if it had quotes.
    let mut closed_at: Option<usize> = None;
    let mut simple = true;
    let mut word_start = start;
    let mut events = 0;
    let newline = loop {
        while events == 0 && word_start < bytes.len() {
            let word = word_at(bytes, word_start);
            events = bytes_equal(word, b'\n') | bytes_equal(word, b',') | bytes_equal(word, b'"');
            if events == 0 {
                word_start += 8;
            }
        }
        if events == 0 {
            break bytes.len();
        }
        let at = word_start + (events.trailing_zeros() / 8) as usize;
        events &= events - 1;
        if events == 0 {
            word_start += 8;
        }
        match bytes[at] {
            b'\n' => break at,
            b'"' if open_quote => {
                open_quote = false;
                closed_at = Some(at);
            }
            b'"' if at == field_start => open_quote = true,
            // `""`, or a quote after a closing one.
            b'"' if closed_at.is_some() => simple = false,
            // A quote inside an unquoted field is text; so is a comma in quotes.
            b'"' => {}
            _ if open_quote => {}
            _ => {
                let span = match closed_at.take() {
                    Some(close) if close + 1 == at => (field_start + 1, close),
                    Some(_) => {
                        simple = false;
                        (at, at)
                    }
                    None => (field_start, at),
                };
                if let Some(slot) = fields.get_mut(count) {
                    *slot = span;
                }
                count += 1;
                field_start = at + 1;
            }
        }
    };
    // `str::lines` drops the `\r` of `\r\n`; any further ones go too.
    let mut end = newline;
    while end > start && bytes[end - 1] == b'\r' {
        end -= 1;
    }
    let last = match closed_at {
        Some(close) if close + 1 == end => (field_start + 1, close),
        Some(_) => {
            simple = false;
            (end, end)
        }
        None => (field_start, end.max(field_start)),
    };
    simple &= !open_quote;
    if let Some(slot) = fields.get_mut(count) {
        *slot = last;
    }
    count += 1;
    // A first byte that is visible ASCII other than `#` means the line is
    // neither blank nor a comment.
    let visible = matches!(bytes.get(start), Some(b'!'..=b'~')) && bytes[start] != b'#';
    LineScan { newline, end, fields: (simple && visible).then_some((fields, count)) }
}

/// A field of a simple line: every span starts after a quote, a comma or a
/// line start and ends before one or at a line end, on character boundaries.
fn field<'a>(text: &'a str, fields: &[(usize, usize); 4], i: usize) -> &'a str {
    fields.get(i).and_then(|&(from, to)| text.get(from..to)).unwrap_or("")
}

/// What is wrong with a simple line, if anything.
fn check_simple(text: &str, fields: &[(usize, usize); 4], count: usize) -> Result<(), &'static str> {
    if count < 3 {
        Err(NEEDS_THREE)
    } else if field(text, fields, 0).is_empty() || field(text, fields, 1).is_empty() {
        Err(NOT_EMPTY)
    } else {
        Ok(())
    }
}

/// A simple line's entry, from the field offsets [`scan_line`] found.
fn simple_entry<'a>(text: &'a str, fields: &[(usize, usize); 4], count: usize) -> Result<Entry<'a>, &'static str> {
    check_simple(text, fields, count)?;
    let field = |i| Cow::Borrowed(field(text, fields, i));
    Ok(Entry { token: field(0), user: field(1), uid: field(2), groups: field(3) })
}

const NEEDS_THREE: &str = "needs at least token,user,uid";
const NOT_EMPTY: &str = "the token and the user must not be empty";

/// Any line, by the general rules: `None` for a blank line or a comment.
fn general_line(line: &str) -> Option<Result<Entry<'_>, String>> {
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return None;
    }
    Some(match fields(line) {
        Err(e) => Err(e),
        Ok((_, count)) if count < 3 => Err(NEEDS_THREE.into()),
        Ok(([token, user, ..], _)) if token.is_empty() || user.is_empty() => Err(NOT_EMPTY.into()),
        Ok(([token, user, uid, groups], _)) => Ok(Entry { token, user, uid, groups }),
    })
}

/// Parse the whole file.
///
/// # Errors
///
/// A message naming the first bad line.
pub fn parse(text: &str) -> Result<Vec<Entry<'_>>, String> {
    entries(text).collect()
}

/// The table key of `token`: its SHA-256. The host's table holds digests,
/// never tokens, and compares digests, so how long a comparison takes says
/// nothing an attacker could use to build a token.
pub fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Longest value the host's table takes (contract 0.1.5).
const MAX_VALUE: usize = 64 * 1024;

/// The table value of `entry`: user, uid and each group, each as a
/// little-endian u32 length and its bytes.
fn encode(entry: &Entry<'_>) -> Vec<u8> {
    let mut value = Vec::with_capacity(entry.user.len() + entry.uid.len() + entry.groups.len() + 16);
    for field in [&*entry.user, &*entry.uid].into_iter().chain(entry.groups()) {
        // Fields are parts of a file under 4 GiB.
        value.extend_from_slice(&(field.len() as u32).to_le_bytes());
        value.extend_from_slice(field.as_bytes());
    }
    value
}

/// The user a table value names, as [`encode`] wrote it.
pub fn decode(value: &[u8]) -> Option<UserInfo> {
    let mut rest = value;
    let mut next = || -> Option<Option<String>> {
        let Some((length, after)) = rest.split_first_chunk::<4>() else {
            return rest.is_empty().then_some(None);
        };
        let (field, after) = after.split_at_checked(u32::from_le_bytes(*length) as usize)?;
        rest = after;
        Some(Some(String::from_utf8(field.to_vec()).ok()?))
    };
    let username = next()??;
    let uid = next()??;
    let mut groups = Vec::new();
    while let Some(group) = next()? {
        groups.push(group);
    }
    Some(UserInfo { username, uid: (!uid.is_empty()).then_some(uid), groups, extra: Vec::new() })
}

/// The key and value of every token line, in file order, checking every line.
///
/// # Errors
///
/// A message naming the first bad line, or a line whose user, uid and groups
/// take more than a table value may hold.
pub fn table_entries(text: &str) -> impl Iterator<Item = Result<([u8; 32], Vec<u8>), String>> {
    entries(text).map(|entry| {
        let entry = entry?;
        let value = encode(&entry);
        if value.len() > MAX_VALUE {
            return Err(format!(
                "the line of user `{}` holds {} bytes of user, uid and groups, over the {MAX_VALUE} a token may have",
                entry.user.escape_debug(),
                value.len()
            ));
        }
        Ok((token_key(&entry.token), value))
    })
}

struct TokenFile;

/// Whether this instance's table is filled: by setup (and so in every review
/// started from its snapshot), or by the first review on a host that runs no
/// setup.
static FILLED: OnceLock<()> = OnceLock::new();

/// Read, check and index the granted file into the host's table.
fn fill() -> Result<(), Error> {
    if FILLED.get().is_some() {
        return Ok(());
    }
    let path = config::require("path")?;
    let text = files::read_to_string(&path)?;
    let filled = table_entries(&text)
        .try_for_each(|pair| {
            pair.and_then(|(key, value)| table::insert(key, value).map(drop).map_err(|e| e.describe()))
        })
        .map_err(|e| Error::misconfigured(format!("{path}: {e}")));
    // The text itself is not kept: wiped, so the image of this instance
    // (its memory, freed parts included) does not carry it.
    let mut bytes = text.into_bytes();
    bytes.fill(0);
    std::hint::black_box(&mut bytes);
    drop(bytes);
    filled?;
    let _ = FILLED.set(());
    Ok(())
}

impl Validator for TokenFile {
    fn setup() -> Result<(), Error> {
        fill()
    }

    fn validate(review: TokenReview) -> Result<ReviewOutcome, Error> {
        fill()?;
        let found = table::get(token_key(&review.token));
        Ok(match found.as_deref().map(decode) {
            Some(Some(user)) => ReviewOutcome::authenticated(user),
            Some(None) => return Err(Error::failed("the table holds a value this validator did not write")),
            None => ReviewOutcome::rejected("unknown token"),
        })
    }
}

credbroker_sdk::export_validator!(TokenFile);

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference answer: the entry for `token` in the file `text`, by a
    /// scan of every line (a broken file is an error, not a partial answer).
    fn lookup<'a>(text: &'a str, token: &str) -> Result<Option<Entry<'a>>, String> {
        let mut found = None;
        let mut lines = Lines { text, at: 0, number: 0 };
        while let Some(line) = lines.next() {
            let entry = match line {
                // Checked and compared in place: an entry is built only for the
                // line that matches.
                Line::Simple(fields, count) => {
                    check_simple(text, &fields, count).map_err(|what| lines.bad(what))?;
                    if field(text, &fields, 0) != token || found.is_some() {
                        continue;
                    }
                    simple_entry(text, &fields, count).map_err(|what| lines.bad(what))?
                }
                Line::Other(line) => match general_line(line) {
                    None => continue,
                    Some(entry) => entry.map_err(|what| lines.bad(&what))?,
                },
            };
            if entry.token == token && found.is_none() {
                found = Some(entry);
            }
        }
        Ok(found)
    }

    #[test]
    fn the_apiserver_format_parses() {
        let entries =
            parse("# comment\n\nt1,alice,1001,\"devs,ops\"\nt2,bob,1002\r\n\"t,3\",carol,,\"a\"\"b\"\n").unwrap();
        assert_eq!(entries.len(), 3);
        let groups = |e: &Entry| e.groups().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(groups(&entries[0]), ["devs", "ops"]);
        assert_eq!(groups(&entries[1]), Vec::<String>::new());
        assert_eq!(entries[2].token, "t,3");
        assert_eq!(groups(&entries[2]), ["a\"b"]);
        let same = "# comment\n\nt1,alice,1001,\"devs,ops\"\nt2,bob,1002\r\n\"t,3\",carol,,\"a\"\"b\"\n";
        assert_eq!(lookup(same, "t2").unwrap().unwrap().user, "bob");
        assert!(lookup(same, "t").unwrap().is_none());
        let text = "# comment\nt1,alice,1001\nt2,bob,1002\n";
        assert_eq!(lookup(text, "t2").unwrap().unwrap().user, "bob");
        assert_eq!(lookup(text, "t3").unwrap(), None);
        assert_eq!(lookup("t1,a,1\nbroken\n", "t1").unwrap_err(), "line 2: needs at least token,user,uid");
    }

    /// The table setup fills, as the host keeps it: the first value of a key stays.
    fn filled_table(text: &str) -> Result<std::collections::HashMap<[u8; 32], Vec<u8>>, String> {
        let mut table = std::collections::HashMap::new();
        for pair in table_entries(text) {
            let (key, value) = pair?;
            table.entry(key).or_insert(value);
        }
        Ok(table)
    }

    #[test]
    fn the_table_answers_as_the_full_scan_does() {
        let text = "# comment\n\nt1,alice,1001,\"devs,ops\"\nt2,bob,1002\r\n\"t,3\",carol,,\"a\"\"b\"\nt2,shadowed,9\n";
        let table = filled_table(text).unwrap();
        assert_eq!(table.len(), 3);
        for token in ["t1", "t2", "t,3", "t", "t22", "", "t1,"] {
            let found = table.get(&token_key(token)).map(|value| decode(value).unwrap());
            let expected = lookup(text, token).unwrap().map(|entry| UserInfo {
                username: entry.user.to_string(),
                uid: (!entry.uid.is_empty()).then(|| entry.uid.to_string()),
                groups: entry.groups().map(str::to_string).collect(),
                extra: Vec::new(),
            });
            assert_eq!(found, expected, "{token}");
        }
        assert_eq!(decode(&table[&token_key("t2")]).unwrap().username, "bob", "the first line wins");
        assert_eq!(decode(&table[&token_key("t,3")]).unwrap().groups, ["a\"b"]);
        assert_eq!(filled_table("t1,a,1\nbroken\n").unwrap_err(), "line 2: needs at least token,user,uid");
        // Values are bounded like the host's table values.
        let many = format!("t,u,1,\"{}\"\n", vec!["g"; 20_000].join(","));
        let refused = filled_table(&many).unwrap_err();
        assert!(refused.contains("over the 65536 a token may have"), "{refused}");
        // What decode is given back is what encode wrote, or nothing.
        assert_eq!(decode(b"\x05\0\0\0ab"), None);
        assert_eq!(decode(b""), None);
    }

    #[test]
    fn borrowed_fields_match_the_character_loop() {
        for line in [
            "a,b,c",
            "a,b,c,\"d,e\"",
            "\"a\",\"\",c,",
            "a\"b,\"c\"d,e",
            "\"x\"\"y\",z",
            "\"open,a",
            ",,,",
            "\"a\"b,c",
            "t,u,1,\"g\"",
            "a,b,c,d,e,\"f\",g",
            "a,b,c,d,e,\"open",
        ] {
            match (fields(line), fields_slow(line)) {
                (Ok((fast, count)), Ok(slow)) => {
                    assert_eq!(count, slow.len(), "{line}");
                    assert_eq!(fast[..count.min(4)], slow[..count.min(4)], "{line}");
                }
                (fast, slow) => assert_eq!(fast.map(|_| ()), slow.map(|_| ()), "{line}"),
            }
        }
    }

    /// The rules as first written, one `str` method at a time: the fast
    /// scanner must give exactly these answers.
    fn reference_entries(text: &str) -> Vec<Result<Entry<'_>, String>> {
        text.lines()
            .enumerate()
            .filter_map(|(number, line)| {
                general_line(line.trim_end_matches('\r'))
                    .map(|e| e.map_err(|what| format!("line {}: {what}", number + 1)))
            })
            .collect()
    }

    #[test]
    fn the_scanner_agrees_with_the_reference_rules() {
        let lines = [
            "t1,alice,1001,\"devs,ops\"",
            "t2,bob,1002",
            "t3,carol,,a,b,c",
            "t4,dave,4,g1,extra",
            "t5,erin",
            "t6",
            ",nobody,1",
            "t7,,1",
            "  t8,frank,8",
            "\tt9,grace,9",
            "# comment",
            "   # indented comment",
            "#",
            "",
            "   ",
            "\r",
            "\u{a0}t10,heidi,10",
            "\u{a0}",
            "\u{feff}t11,ivan,11",
            "t12,judy,12\r\r",
            "t13,mallory,13, spaced , groups ",
            "\"t,14\",oscar,14",
            "\"open,a,1",
            "t15,\"peggy\",15,\"a\"\"b\"",
            "t16,trent,16,",
            "t17,wendy,17,,",
            "\x01t18,ctl,18",
            "~t19,tilde,19",
            "t20,ünï,20,grüppe",
            "t21,u,21,\"a\"b",
            "\"t22\"x,u,22",
            "t23,\"\",23",
            "t24,u,\"24\"",
            "t25,u,25,\"g\"\r",
            "t26,u,26,\"g,h\",\"more\"",
            "t27,u\"v,27",
            "\"\",u,28",
            "t29,u,29,\"",
        ];
        let mut texts: Vec<String> = lines.iter().map(|l| format!("{l}\n")).collect();
        texts.extend(lines.iter().map(|l| l.to_string()));
        texts.extend(lines.iter().map(|l| format!("{l}\r\n")));
        texts.push(lines.join("\n"));
        texts.push(lines.join("\r\n"));
        texts.push(lines.iter().filter(|l| !l.contains("open")).copied().collect::<Vec<_>>().join("\n"));
        for text in &texts {
            assert_eq!(entries(text).collect::<Vec<_>>(), reference_entries(text), "{text:?}");
        }
        // Only the lines that parse, so that lookups have something to find.
        let valid: Vec<&str> =
            lines.iter().copied().filter(|l| reference_entries(l).iter().all(Result::is_ok)).collect();
        assert!(valid.len() > 15);
        for text in [valid.join("\n"), valid.join("\r\n")] {
            for token in ["t1", "t,14", "t13", "t20", "\u{feff}t11", "\u{a0}t10", "t99", "t"] {
                let expected =
                    reference_entries(&text).into_iter().find(|e| e.as_ref().is_ok_and(|e| e.token == token));
                assert_eq!(lookup(&text, token), expected.transpose(), "{token}");
            }
        }
        assert!(lookup(&valid.join("\n"), "t20").unwrap().is_some_and(|e| e.user == "ünï"));
    }

    #[test]
    fn random_lines_agree_with_the_reference_rules() {
        // Lines of the bytes that matter, in every arrangement a small
        // generator reaches (deterministic: a linear congruential sequence).
        let pieces = ["a", "tok", ",", ",", "\"", "\"\"", "\r", " ", "#", "é", "\n", "long-field-value", "\t"];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: usize| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize % n
        };
        for _ in 0..20_000 {
            let text: String = (0..next(24)).map(|_| pieces[next(pieces.len())]).collect();
            let reference = reference_entries(&text);
            assert_eq!(entries(&text).collect::<Vec<_>>(), reference, "{text:?}");
            for token in ["a", "tok", "long-field-value", "\"", "é"] {
                let expected = reference
                    .iter()
                    .cloned()
                    .collect::<Result<Vec<_>, _>>()
                    .map(|all| all.into_iter().find(|e| e.token == token));
                assert_eq!(lookup(&text, token), expected, "{token} in {text:?}");
                match (filled_table(&text), &expected) {
                    (Ok(table), Ok(expected)) => {
                        let found = table.get(&token_key(token)).and_then(|value| decode(value));
                        let expected = expected.as_ref().map(|entry| entry.user.to_string());
                        assert_eq!(found.map(|user| user.username), expected, "table: {token} in {text:?}")
                    }
                    (Err(error), Err(expected)) => assert_eq!(&error, expected, "{text:?}"),
                    (built, expected) => panic!("table {built:?} but scan {expected:?} for {text:?}"),
                }
            }
        }
    }

    #[test]
    fn words_flag_exactly_the_equal_bytes() {
        let text: Vec<u8> = (0..=255u8).chain(b",,\n\"-,+".iter().copied()).collect();
        for at in 0..text.len() {
            let word = word_at(&text, at);
            for byte in [b',', b'\n', b'"', 0, 0x7f, 0x80, 0xff] {
                let flagged: Vec<usize> = (0..8).filter(|i| bytes_equal(word, byte) & (0x80 << (8 * i)) != 0).collect();
                // Past the end the word is zero-padded.
                let expected: Vec<usize> = (0..8).filter(|&i| text.get(at + i).copied().unwrap_or(0) == byte).collect();
                assert_eq!(flagged, expected, "byte {byte} at {at}");
            }
        }
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(parse("ok,a,1\nnope,b\n").unwrap_err(), "line 2: needs at least token,user,uid");
        assert_eq!(parse("\"open,a,1\n").unwrap_err(), "line 1: an unterminated quote");
        assert_eq!(parse(",a,1\n").unwrap_err(), "line 1: the token and the user must not be empty");
    }
}
