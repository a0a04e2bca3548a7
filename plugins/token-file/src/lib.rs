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

use credbroker_sdk::{Error, ReviewOutcome, TokenReview, UserInfo, Validator, config, files};

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The bearer token.
    pub token: String,
    /// User name.
    pub user: String,
    /// User uid.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
}

/// Split one CSV line into fields, honouring double quotes (`""` is a quote).
fn fields(line: &str) -> Result<Vec<String>, String> {
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
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let bad = |what: &str| format!("line {}: {what}", number + 1);
        let record = fields(line).map_err(|e| bad(&e))?;
        if record.len() < 3 {
            return Err(bad("needs at least token,user,uid"));
        }
        if record[0].is_empty() || record[1].is_empty() {
            return Err(bad("the token and the user must not be empty"));
        }
        let groups = record
            .get(3)
            .map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        entries.push(Entry { token: record[0].clone(), user: record[1].clone(), uid: record[2].clone(), groups });
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

/// The entry for `token`.
pub fn find<'a>(entries: &'a [Entry], token: &str) -> Option<&'a Entry> {
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
                username: entry.user.clone(),
                uid: (!entry.uid.is_empty()).then(|| entry.uid.clone()),
                groups: entry.groups.clone(),
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
        assert_eq!(entries[0].groups, ["devs", "ops"]);
        assert_eq!(entries[1].groups, Vec::<String>::new());
        assert_eq!(entries[2].token, "t,3");
        assert_eq!(entries[2].groups, ["a\"b"]);
        assert_eq!(find(&entries, "t2").unwrap().user, "bob");
        assert!(find(&entries, "t").is_none());
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(parse("ok,a,1\nnope,b\n").unwrap_err(), "line 2: needs at least token,user,uid");
        assert_eq!(parse("\"open,a,1\n").unwrap_err(), "line 1: an unterminated quote");
        assert_eq!(parse(",a,1\n").unwrap_err(), "line 1: the token and the user must not be empty");
    }
}
