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

/// Split one CSV line into fields, honouring double quotes (`""` is a quote).
/// Fields without an escaped quote borrow from `line`.
fn fields(line: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let mut fields = Vec::with_capacity(4);
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
        fields.push(Cow::Borrowed(field));
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None => return Ok(fields),
        }
    }
    fields.extend(fields_slow(rest)?.into_iter().map(Cow::Owned));
    Ok(fields)
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

/// Parse the whole file.
///
/// # Errors
///
/// A message naming the first bad line.
pub fn parse(text: &str) -> Result<Vec<Entry<'_>>, String> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let bad = |what: &str| format!("line {}: {what}", number + 1);
        let mut record = fields(line).map_err(|e| bad(&e))?.into_iter();
        let (Some(token), Some(user), Some(uid)) = (record.next(), record.next(), record.next()) else {
            return Err(bad("needs at least token,user,uid"));
        };
        if token.is_empty() || user.is_empty() {
            return Err(bad("the token and the user must not be empty"));
        }
        entries.push(Entry { token, user, uid, groups: record.next().unwrap_or_default() });
    }
    Ok(entries)
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
        let entries = parse(&text).map_err(|e| Error::misconfigured(format!("{path}: {e}")))?;
        Ok(match find(&entries, &review.token) {
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
        ] {
            let fast = fields(line).map(|f| f.into_iter().map(Cow::into_owned).collect::<Vec<_>>());
            assert_eq!(fast, fields_slow(line), "{line}");
        }
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(parse("ok,a,1\nnope,b\n").unwrap_err(), "line 2: needs at least token,user,uid");
        assert_eq!(parse("\"open,a,1\n").unwrap_err(), "line 1: an unterminated quote");
        assert_eq!(parse(",a,1\n").unwrap_err(), "line 1: the token and the user must not be empty");
    }
}
