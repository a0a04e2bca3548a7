//! The `token-file` validator: static tokens in kube-apiserver's
//! `--token-auth-file` format, one per line:
//!
//! ```text
//! token,user,uid,"group1,group2"
//! ```
//!
//! The groups column is optional. Blank lines and lines starting with `#` are
//! skipped. The file is read and indexed once per load, in `validator-setup`
//! (a broken line is a load error): every review then starts from the indexed
//! file and looks its token up in one hash probe, whatever the file's size,
//! like kube-apiserver's own `--token-auth-file`. `credbroker serve` watches
//! the granted file and reloads when it changes.
//!
//! Settings: `path` (required), the CSV file; grant it under `grants.files`.
//! The whole file passes through one host call: raise the validator's
//! `max-call-bytes` to its size (and `memory-mib` to about twice that).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::OnceLock;

use credbroker_sdk::{Error, ReviewOutcome, TokenReview, UserInfo, Validator, config, files};

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

/// The entry for `token` in the file `text`, checking every line (a broken
/// file is an error, not a partial answer) and comparing with every token, in
/// one pass and without collecting the entries.
///
/// # Errors
///
/// A message naming the first bad line.
pub fn lookup<'a>(text: &'a str, token: &str) -> Result<Option<Entry<'a>>, String> {
    let mut found = None;
    let mut lines = Lines { text, at: 0, number: 0 };
    while let Some(line) = lines.next() {
        let entry = match line {
            // Checked and compared in place: an entry is built only for the
            // line that matches.
            Line::Simple(fields, count) => {
                check_simple(text, &fields, count).map_err(|what| lines.bad(what))?;
                if !constant_time_eq(field(text, &fields, 0).as_bytes(), token.as_bytes()) || found.is_some() {
                    continue;
                }
                simple_entry(text, &fields, count).map_err(|what| lines.bad(what))?
            }
            Line::Other(line) => match general_line(line) {
                None => continue,
                Some(entry) => entry.map_err(|what| lines.bad(&what))?,
            },
        };
        if constant_time_eq(entry.token.as_bytes(), token.as_bytes()) && found.is_none() {
            found = Some(entry);
        }
    }
    Ok(found)
}

/// A hasher that passes an already keyed hash through.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Where the lines of one token hash start (almost always one).
#[derive(Debug)]
enum Starts {
    One(u32),
    Many(Vec<u32>),
}

/// A token file, checked and indexed: its text, and where each token's line
/// starts, by a keyed hash of the token (the key is drawn per load, so nobody
/// can pick tokens that collide).
#[derive(Debug)]
pub struct Index {
    text: String,
    keys: RandomState,
    lines: HashMap<u64, Starts, BuildHasherDefault<Prehashed>>,
}

impl Index {
    /// Check every line of `text` and index its tokens.
    ///
    /// # Errors
    ///
    /// A message naming the first bad line; a file over 4 GiB.
    pub fn build(text: String) -> Result<Self, String> {
        if u32::try_from(text.len()).is_err() {
            return Err("a token file must be smaller than 4 GiB".into());
        }
        let keys = RandomState::new();
        let mut lines: HashMap<u64, Starts, BuildHasherDefault<Prehashed>> = HashMap::default();
        let mut scan = Lines { text: &text, at: 0, number: 0 };
        loop {
            let start = scan.at;
            let Some(line) = scan.next() else { break };
            let token = match line {
                Line::Simple(fields, count) => {
                    check_simple(&text, &fields, count).map_err(|what| scan.bad(what))?;
                    Cow::Borrowed(field(&text, &fields, 0))
                }
                Line::Other(line) => match general_line(line) {
                    None => continue,
                    Some(entry) => entry.map_err(|what| scan.bad(&what))?.token,
                },
            };
            // `start` fits: the text is under 4 GiB.
            let start = start as u32;
            lines
                .entry(keys.hash_one(token.as_bytes()))
                .and_modify(|starts| match starts {
                    Starts::One(first) => *starts = Starts::Many(vec![*first, start]),
                    Starts::Many(all) => all.push(start),
                })
                .or_insert(Starts::One(start));
        }
        lines.shrink_to_fit();
        Ok(Self { text, keys, lines })
    }

    /// How many lines hold a token.
    pub fn len(&self) -> usize {
        self.lines.values().map(|s| if let Starts::Many(all) = s { all.len() } else { 1 }).sum()
    }

    /// Whether the file holds no token.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The entry of the line starting at `start` (a line [`Index::build`] checked).
    fn entry_at(&self, start: u32) -> Option<Entry<'_>> {
        let mut lines = Lines { text: &self.text, at: start as usize, number: 0 };
        match lines.next()? {
            Line::Simple(fields, count) => simple_entry(&self.text, &fields, count).ok(),
            Line::Other(line) => general_line(line).and_then(Result::ok),
        }
    }

    /// The entry for `token`: the first line that holds it.
    pub fn lookup(&self, token: &str) -> Option<Entry<'_>> {
        let starts = match self.lines.get(&self.keys.hash_one(token.as_bytes()))? {
            Starts::One(start) => std::slice::from_ref(start),
            Starts::Many(all) => all.as_slice(),
        };
        starts
            .iter()
            .filter_map(|start| self.entry_at(*start))
            .find(|entry| constant_time_eq(entry.token.as_bytes(), token.as_bytes()))
    }
}

/// Compare without an early exit, so response time says nothing about how much
/// of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct TokenFile;

/// The file, indexed by setup (or by the first review, on a host that does
/// not run setups).
static INDEX: OnceLock<Index> = OnceLock::new();

fn index() -> Result<&'static Index, Error> {
    if let Some(index) = INDEX.get() {
        return Ok(index);
    }
    let path = config::require("path")?;
    let text = files::read_to_string(&path)?;
    let index = Index::build(text).map_err(|e| Error::misconfigured(format!("{path}: {e}")))?;
    Ok(INDEX.get_or_init(|| index))
}

impl Validator for TokenFile {
    fn setup() -> Result<(), Error> {
        index().map(|_| ())
    }

    fn validate(review: TokenReview) -> Result<ReviewOutcome, Error> {
        let found = index()?.lookup(&review.token);
        Ok(match found {
            Some(entry) => ReviewOutcome::authenticated(UserInfo {
                username: entry.user.to_string(),
                uid: (!entry.uid.is_empty()).then(|| entry.uid.to_string()),
                groups: entry.groups().map(str::to_string).collect(),
                extra: Vec::new(),
            }),
            None => ReviewOutcome::rejected("unknown token"),
        })
    }
}

credbroker_sdk::export_validator!(TokenFile);

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_index_answers_as_the_full_scan_does() {
        let text = "# comment\n\nt1,alice,1001,\"devs,ops\"\nt2,bob,1002\r\n\"t,3\",carol,,\"a\"\"b\"\nt2,shadowed,9\n";
        let index = Index::build(text.to_string()).unwrap();
        assert_eq!(index.len(), 4);
        for token in ["t1", "t2", "t,3", "t", "t22", "", "t1,"] {
            assert_eq!(index.lookup(token), lookup(text, token).unwrap(), "{token}");
        }
        assert_eq!(index.lookup("t2").unwrap().user, "bob", "the first line wins");
        assert_eq!(Index::build("t1,a,1\nbroken\n".into()).unwrap_err(), "line 2: needs at least token,user,uid");
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
                match (Index::build(text.clone()), &expected) {
                    (Ok(index), Ok(expected)) => {
                        assert_eq!(&index.lookup(token), expected, "index: {token} in {text:?}")
                    }
                    (Err(error), Err(expected)) => assert_eq!(&error, expected, "{text:?}"),
                    (built, expected) => panic!("index {built:?} but scan {expected:?} for {text:?}"),
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
