//! RFC 4515 escaping for values placed into LDAP search filters.
//!
//! Any value that comes from a user (a username, a group name) must pass through
//! [`escape`] before it is put into a filter: `*)(uid=*` as a username would
//! otherwise match every entry.

/// Escape `value` for use inside an LDAP filter assertion (RFC 4515 section 3):
/// `*`, `(`, `)`, `\` and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// Fill `template`'s `{}` placeholders with `value`, escaped: e.g.
/// `fill("(&(objectClass=person)(uid={}))", user)`.
pub fn fill(template: &str, value: &str) -> String {
    template.replace("{}", &escape(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(escape("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(escape("a\\b\0c"), "a\\5cb\\00c");
        assert_eq!(escape("José O'Neil"), "José O'Neil");
    }

    #[test]
    fn fill_escapes_the_value_not_the_template() {
        assert_eq!(
            fill("(&(objectClass=person)(uid={}))", "x)(|(uid=*"),
            "(&(objectClass=person)(uid=x\\29\\28|\\28uid=\\2a))"
        );
    }
}
