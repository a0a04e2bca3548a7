//! The AWS CLI's shared files, as botocore reads them: `~/.aws/config`
//! (`[default]`, `[profile NAME]`, `[sso-session NAME]`) and
//! `~/.aws/credentials` (`[NAME]`), `key = value` lines, whole-line comments
//! starting with `#` or `;`, and indented lines continuing a nested value
//! (`s3 =` then `  max_concurrent_requests = 20`), which are skipped.

use std::collections::BTreeMap;

/// One section's keys and values.
pub type Section = BTreeMap<String, String>;

/// The sections of one file, by their header as written (`profile dev`).
fn sections(text: &str) -> Vec<(String, Section)> {
    let mut out: Vec<(String, Section)> = Vec::new();
    for line in text.lines() {
        let indented = line.starts_with(char::is_whitespace);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.trim().to_string(), Section::new()));
            continue;
        }
        if indented {
            continue;
        }
        if let (Some((key, value)), Some((_, section))) = (line.split_once('='), out.last_mut()) {
            section.insert(key.trim().to_string(), value.trim().to_string());
        }
    }
    out
}

/// The profiles and SSO sessions of the config and credentials files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SharedFiles {
    /// `[default]` / `[profile NAME]` of the config file.
    pub config: BTreeMap<String, Section>,
    /// `[NAME]` of the credentials file.
    pub credentials: BTreeMap<String, Section>,
    /// `[sso-session NAME]` of the config file.
    pub sso_sessions: BTreeMap<String, Section>,
}

impl SharedFiles {
    /// Parse the config file's and the credentials file's text.
    pub fn parse(config: &str, credentials: &str) -> Self {
        let mut files = Self::default();
        for (header, section) in sections(config) {
            let (kind, name) = header.split_once(char::is_whitespace).unwrap_or(("", &header));
            match (kind, name.trim()) {
                ("", "default") => merge(&mut files.config, "default", section),
                ("profile", name) => merge(&mut files.config, name, section),
                ("sso-session", name) => merge(&mut files.sso_sessions, name, section),
                // `[services ...]` and others hold no credentials.
                _ => {}
            }
        }
        for (name, section) in sections(credentials) {
            merge(&mut files.credentials, &name, section);
        }
        files
    }

    /// Profile `name`: the config file's keys with the credentials file's
    /// over them (botocore merges them so), or `None` when neither has it.
    pub fn profile(&self, name: &str) -> Option<Section> {
        let (config, credentials) = (self.config.get(name), self.credentials.get(name));
        if config.is_none() && credentials.is_none() {
            return None;
        }
        let mut merged = config.cloned().unwrap_or_default();
        merged.extend(credentials.cloned().unwrap_or_default());
        Some(merged)
    }
}

fn merge(into: &mut BTreeMap<String, Section>, name: &str, section: Section) {
    into.entry(name.to_string()).or_default().extend(section);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_sessions_and_credentials_merge_like_botocore() {
        let config = "# mine\n[default]\nregion = eu-west-1\n\n[profile dev]\nrole_arn = arn:aws:iam::1:role/dev\n\
                      source_profile = default\ns3 =\n  max_concurrent_requests = 20\nregion=us-east-2\n\
                      [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n\
                      [services local]\nsts =\n  endpoint_url = http://x\n[profile  spaced ]\n; comment\nk = v = w\n";
        let credentials = "[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s1\nregion = ap-south-1\n\
                           [ci]\naws_access_key_id=AKIA2\n";
        let files = SharedFiles::parse(config, credentials);
        let default = files.profile("default").unwrap();
        assert_eq!(default["aws_access_key_id"], "AKIA1");
        assert_eq!(default["region"], "ap-south-1", "the credentials file wins");
        let dev = files.profile("dev").unwrap();
        assert_eq!((dev["source_profile"].as_str(), dev["region"].as_str()), ("default", "us-east-2"));
        assert!(!dev.contains_key("max_concurrent_requests"), "nested values are skipped");
        assert_eq!(files.sso_sessions["corp"]["sso_region"], "eu-west-1");
        assert_eq!(files.profile("spaced").unwrap()["k"], "v = w");
        assert_eq!(files.profile("ci").unwrap()["aws_access_key_id"], "AKIA2");
        assert!(files.profile("local").is_none() && files.profile("missing").is_none());
        assert!(files.profile("profile dev").is_none(), "the config file's header is not a name");
    }
}
