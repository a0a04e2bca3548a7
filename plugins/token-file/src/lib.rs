//! The `token-file` validator: static tokens in kube-apiserver's
//! `--token-auth-file` format, one per line:
//!
//! ```text
//! token,user,uid,"group1,group2"
//! ```
//!
//! The groups column is optional. Blank lines and lines starting with `#` are
//! skipped. The file is read through a read-only file grant on every review, so
//! edits take effect at once (the host caches the content until the file
//! changes).
//!
//! Settings: `path` (required), the CSV file; grant it under `grants.files`.

use std::borrow::Cow;

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
    text.lines().enumerate().filter_map(|(number, line)| {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            return None;
        }
        let bad = |what: &str| format!("line {}: {what}", number + 1);
        Some(match fields(line) {
            Err(e) => Err(bad(&e)),
            Ok((_, count)) if count < 3 => Err(bad("needs at least token,user,uid")),
            Ok(([token, user, ..], _)) if token.is_empty() || user.is_empty() => {
                Err(bad("the token and the user must not be empty"))
            }
            Ok(([token, user, uid, groups], _)) => Ok(Entry { token, user, uid, groups }),
        })
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
    for entry in entries(text) {
        let entry = entry?;
        if constant_time_eq(entry.token.as_bytes(), token.as_bytes()) && found.is_none() {
            found = Some(entry);
        }
    }
    Ok(found)
}

/// Compare without an early exit, so response time says nothing about how much
/// of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The first entry whose token is `token`, comparing with every entry.
pub fn find<'e, 'a>(entries: &'e [Entry<'a>], token: &str) -> Option<&'e Entry<'a>> {
    let mut found = None;
    for entry in entries {
        if constant_time_eq(entry.token.as_bytes(), token.as_bytes()) && found.is_none() {
            found = Some(entry);
        }
    }
    found
}

struct TokenFile;

impl Validator for TokenFile {
    fn validate(review: TokenReview) -> Result<ReviewOutcome, Error> {
        let path = config::require("path")?;
        let text = files::read_to_string(&path)?;
        let found = lookup(&text, &review.token).map_err(|e| Error::misconfigured(format!("{path}: {e}")))?;
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
        assert_eq!(find(&entries, "t2").unwrap().user, "bob");
        assert!(find(&entries, "t").is_none());
        let text = "# comment\nt1,alice,1001\nt2,bob,1002\n";
        assert_eq!(lookup(text, "t2").unwrap().unwrap().user, "bob");
        assert_eq!(lookup(text, "t3").unwrap(), None);
        assert_eq!(lookup("t1,a,1\nbroken\n", "t1").unwrap_err(), "line 2: needs at least token,user,uid");
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

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(parse("ok,a,1\nnope,b\n").unwrap_err(), "line 2: needs at least token,user,uid");
        assert_eq!(parse("\"open,a,1\n").unwrap_err(), "line 1: an unterminated quote");
        assert_eq!(parse(",a,1\n").unwrap_err(), "line 1: the token and the user must not be empty");
    }
}
