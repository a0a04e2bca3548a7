//! Where the provider's AWS credentials come from: the AWS CLI's chain, in
//! its order (botocore's `create_credential_resolver`), inside the sandbox.
//!
//! 1. The `access-key-id`/`secret-access-key` settings (like credentials
//!    passed to a client).
//! 2. The environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!    `AWS_SESSION_TOKEN` (skipped when the `profile` setting names a
//!    profile, as `--profile` does for the CLI).
//! 3. The profile's `role_arn` with `source_profile` (chains of them) or
//!    `credential_source = Environment`: STS AssumeRole.
//! 4. Web identity: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (IRSA), or
//!    the profile's `web_identity_token_file` + `role_arn`:
//!    AssumeRoleWithWebIdentity.
//! 5. IAM Identity Center (SSO): the profile's `sso_session` (or legacy
//!    `sso_start_url`) with `sso_account_id` + `sso_role_name`, the token
//!    `aws sso login` cached in `~/.aws/sso/cache/`: GetRoleCredentials.
//! 6. The profile's keys in the credentials file.
//! 7. The profile's `credential_process`: run by the host, which runs only
//!    the command lines the operator lists in `grants.credential-process`;
//!    its output is the AWS CLI's process credentials JSON.
//! 8. The profile's keys in the config file.
//! 9. The container endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI` or
//!    `_RELATIVE_URI`, with `AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]`): ECS
//!    tasks and EKS Pod Identity.
//!
//! The plugin sees only what the operator grants: variables through
//! `grants.env`, files through `grants.files`, endpoints through
//! `grants.http`, credential helpers through `grants.credential-process`. A
//! source that is not configured is skipped (and named in the error when
//! nothing is found); one that is configured but fails is an error at once,
//! naming what to grant or configure. Everything outside the
//! sandbox is behind [`Sources`], so the order is tested natively.

use crate::ini::{Section, SharedFiles};
use crate::sigv4::Credentials;
use credbroker_sdk::Error;

/// Credentials that may expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Temporary {
    /// The keys.
    pub credentials: Credentials,
    /// When they stop working, in Unix seconds.
    pub expires_at: Option<u64>,
}

impl Temporary {
    /// Keys without expiry.
    pub fn lasting(credentials: Credentials) -> Self {
        Self { credentials, expires_at: None }
    }
}

/// An STS AssumeRole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRequest {
    /// The role.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `ExternalId`.
    pub external_id: Option<String>,
    /// `SerialNumber` and `TokenCode`.
    pub mfa: Option<(String, String)>,
    /// `DurationSeconds`.
    pub duration_seconds: Option<u32>,
    /// The region whose STS is asked.
    pub region: String,
}

/// An STS AssumeRoleWithWebIdentity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebIdentityRequest {
    /// The role.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// The token (a secret).
    pub token: String,
    /// The region whose STS is asked.
    pub region: String,
}

/// An SSO portal GetRoleCredentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoRequest {
    /// The portal's region (`sso_region`).
    pub region: String,
    /// `account_id`.
    pub account_id: String,
    /// `role_name`.
    pub role_name: String,
    /// The cached access token (a secret).
    pub access_token: String,
    /// The session, for messages (`aws sso login --sso-session NAME`).
    pub login_hint: String,
}

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    /// `grants.files` does not cover it.
    NotGranted,
    /// Anything else, said by the host.
    Unreadable(String),
}

/// Everything the chain reads or asks outside the plugin.
pub trait Sources {
    /// A non-empty setting.
    fn setting(&self, key: &str) -> Option<String>;
    /// A non-empty variable of the (granted) environment.
    fn env(&self, name: &str) -> Option<String>;
    /// A file's text; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    ///
    /// [`FileError`] when it exists but cannot be read.
    fn read(&self, path: &str) -> Result<Option<String>, FileError>;
    /// Now, in Unix seconds.
    fn now(&self) -> u64;
    /// Ask the user (for an MFA code).
    ///
    /// # Errors
    ///
    /// When the run is not interactive.
    fn ask(&self, question: &str) -> Result<String, Error>;
    /// STS AssumeRole signed with `base`.
    ///
    /// # Errors
    ///
    /// STS's refusal or an unreachable STS.
    fn assume_role(&self, base: &Credentials, request: &RoleRequest) -> Result<Temporary, Error>;
    /// STS AssumeRoleWithWebIdentity (unsigned).
    ///
    /// # Errors
    ///
    /// STS's refusal or an unreachable STS.
    fn assume_role_with_web_identity(&self, request: &WebIdentityRequest) -> Result<Temporary, Error>;
    /// SSO GetRoleCredentials.
    ///
    /// # Errors
    ///
    /// The portal's refusal, or an unreachable portal.
    fn sso_role_credentials(&self, request: &SsoRequest) -> Result<Temporary, Error>;
    /// The container endpoint's credentials.
    ///
    /// # Errors
    ///
    /// The endpoint's refusal, or an unreachable endpoint.
    fn container_credentials(&self, url: &str, authorization: Option<&str>) -> Result<Temporary, Error>;
    /// What a profile's `credential_process` printed, run by the host.
    ///
    /// # Errors
    ///
    /// The command line is not granted, cannot run, fails or prints too much.
    fn credential_process(&self, command_line: &str) -> Result<String, Error>;
}

/// What the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The credentials.
    pub temporary: Temporary,
    /// Where they came from, for the log.
    pub source: String,
    /// The region: the `region` setting, `AWS_REGION`, `AWS_DEFAULT_REGION`,
    /// the profile's `region`, else `us-east-1`.
    pub region: String,
}

/// A file the chain may read, with how messages name it (environment values
/// are secrets of the run, so `~` and `$NAME` stand for them).
#[derive(Debug, Clone)]
struct Located {
    path: String,
    shown: String,
}

/// What the chain knows before it asks anyone.
struct Context<'a> {
    sources: &'a dyn Sources,
    files: SharedFiles,
    /// Why files or sources were not available, for the final error.
    notes: Vec<String>,
    home: Option<String>,
    region: String,
    /// The profile the chain starts from, and whether its name is a
    /// variable's value (a secret of the run, so messages say `$AWS_PROFILE`).
    main: String,
    main_from_env: bool,
}

const GRANT_ENV: &str = "grants.env = [\"AWS_*\", \"HOME\"]";

/// `~/rest` expanded with HOME.
fn expand(path: &str, home: Option<&str>) -> Option<String> {
    match path.strip_prefix("~/") {
        Some(rest) => home.map(|h| format!("{}/{rest}", h.trim_end_matches('/'))),
        None => Some(path.to_string()),
    }
}

/// The file a setting, a variable or `~/.aws/NAME` names.
fn locate(
    sources: &dyn Sources,
    setting: &str,
    variable: &str,
    default: &str,
    notes: &mut Vec<String>,
) -> Option<Located> {
    let home = sources.env("HOME");
    let given = sources
        .setting(setting)
        .map(|path| (path.clone(), path))
        .or_else(|| sources.env(variable).map(|path| (path, format!("${variable}"))));
    if let Some((path, shown)) = given {
        let expanded = expand(&path, home.as_deref());
        if expanded.is_none() {
            notes.push(format!("{shown} is under ~, and HOME is not in the plugin's environment ({GRANT_ENV})"));
        }
        return expanded.map(|path| Located { path, shown });
    }
    match home {
        Some(home) => {
            Some(Located { path: format!("{}/{default}", home.trim_end_matches('/')), shown: format!("~/{default}") })
        }
        None => {
            notes.push(format!("~/{default}: HOME is not in the plugin's environment ({GRANT_ENV}, or set {setting})"));
            None
        }
    }
}

fn not_granted(shown: &str) -> String {
    format!("{shown} is not granted: add its absolute path (or the directory ~/.aws/) to grants.files")
}

/// Read `file`: its text, or `None` with a note when it is missing or unreadable.
fn read_noted(sources: &dyn Sources, file: &Located, notes: &mut Vec<String>) -> Option<String> {
    match sources.read(&file.path) {
        Ok(Some(text)) => Some(text),
        Ok(None) => {
            notes.push(format!("{} does not exist", file.shown));
            None
        }
        Err(FileError::NotGranted) => {
            notes.push(not_granted(&file.shown));
            None
        }
        Err(FileError::Unreadable(why)) => {
            notes.push(format!("{}: {why}", file.shown));
            None
        }
    }
}

fn partial(what: &str, has: &str, lacks: &str) -> Error {
    Error::misconfigured(format!("{what} has {has} but not {lacks}"))
}

/// Keys from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (+ session token).
fn environment(sources: &dyn Sources) -> Result<Option<Temporary>, Error> {
    let (key, secret) = (sources.env("AWS_ACCESS_KEY_ID"), sources.env("AWS_SECRET_ACCESS_KEY"));
    let (access_key_id, secret_access_key) = match (key, secret) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(partial("the environment", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY; set and grant both"));
        }
        (None, Some(_)) => {
            return Err(partial("the environment", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID; set and grant both"));
        }
        (Some(k), Some(s)) => (k, s),
    };
    let session_token = sources.env("AWS_SESSION_TOKEN").or_else(|| sources.env("AWS_SECURITY_TOKEN"));
    Ok(Some(Temporary::lasting(Credentials { access_key_id, secret_access_key, session_token })))
}

/// Keys written in a profile section.
fn static_keys(section: &Section, what: &str) -> Result<Option<Temporary>, Error> {
    let get = |k: &str| section.get(k).filter(|v| !v.is_empty()).cloned();
    let (access_key_id, secret_access_key) = match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(partial(what, "aws_access_key_id", "aws_secret_access_key")),
        (None, Some(_)) => return Err(partial(what, "aws_secret_access_key", "aws_access_key_id")),
        (Some(k), Some(s)) => (k, s),
    };
    let session_token = get("aws_session_token").or_else(|| get("aws_security_token"));
    Ok(Some(Temporary::lasting(Credentials { access_key_id, secret_access_key, session_token })))
}

impl Context<'_> {
    /// How messages name profile `name`.
    fn label(&self, name: &str) -> String {
        if self.main_from_env && name == self.main { "$AWS_PROFILE".into() } else { format!("`{name}`") }
    }

    fn profile(&self, name: &str) -> Option<Section> {
        self.files.profile(name)
    }

    fn session_name(&self, profile: Option<&Section>) -> String {
        profile
            .and_then(|p| p.get("role_session_name").cloned())
            .or_else(|| self.sources.setting("session-name"))
            .unwrap_or_else(|| "credbroker".into())
    }

    /// Profile `name`'s role, assumed with its source's credentials
    /// (`visited`: the chain so far, to refuse loops).
    fn assume_role(&self, name: &str, visited: &mut Vec<String>) -> Result<Resolved, Error> {
        let name_l = self.label(name);
        let profile =
            self.profile(name).ok_or_else(|| Error::misconfigured(format!("profile {name_l} does not exist")))?;
        visited.push(name.to_string());
        let role_arn = profile["role_arn"].clone();
        let (base, via) = match (profile.get("source_profile"), profile.get("credential_source")) {
            (Some(_), Some(_)) => {
                return Err(Error::misconfigured(format!(
                    "profile {name_l} has both source_profile and credential_source; keep one"
                )));
            }
            (None, None) => {
                return Err(Error::misconfigured(format!(
                    "profile {name_l} has role_arn but neither source_profile nor credential_source"
                )));
            }
            (Some(source), None) => {
                (self.source_profile(name, source, visited)?, format!("profile {}", self.label(source)))
            }
            (None, Some(source)) => (self.credential_source(name, source)?, format!("credential_source {source}")),
        };
        let mfa = match profile.get("mfa_serial") {
            Some(serial) => {
                let code = self.sources.ask(&format!("MFA code for {serial}:")).map_err(|e| {
                    Error::misconfigured(format!(
                        "profile {name_l} needs an MFA code (mfa_serial), and it cannot be asked: {}",
                        e.message()
                    ))
                })?;
                Some((serial.clone(), code.trim().to_string()))
            }
            None => None,
        };
        let duration_seconds = match profile.get("duration_seconds") {
            Some(text) => Some(text.parse().map_err(|_| {
                Error::misconfigured(format!("profile {name_l}: duration_seconds {text:?} is not a number of seconds"))
            })?),
            None => None,
        };
        let request = RoleRequest {
            role_arn: role_arn.clone(),
            session_name: self.session_name(Some(&profile)),
            external_id: profile.get("external_id").cloned(),
            mfa,
            duration_seconds,
            region: self.region.clone(),
        };
        let temporary = self.sources.assume_role(&base.credentials, &request)?;
        Ok(Resolved {
            temporary,
            source: format!("profile {name_l}: AssumeRole {role_arn} with {via}"),
            region: self.region.clone(),
        })
    }

    /// The credentials of `source`, the source_profile of `name`.
    fn source_profile(&self, name: &str, source: &str, visited: &mut Vec<String>) -> Result<Temporary, Error> {
        let (name_l, source_l) = (self.label(name), self.label(source));
        let profile = self.profile(source).ok_or_else(|| {
            Error::misconfigured(format!("profile {name_l} has source_profile {source_l}, which does not exist"))
        })?;
        let has_static = profile.contains_key("aws_access_key_id");
        if source == name {
            // A profile may name itself to use its own keys.
            return static_keys(&profile, &format!("profile {source_l}"))?.ok_or_else(|| {
                Error::misconfigured(format!("profile {name_l} is its own source_profile but holds no keys"))
            });
        }
        if visited.iter().any(|v| v == source) {
            return Err(Error::misconfigured(format!(
                "the source_profile chain loops: {} -> {source}",
                visited.join(" -> ")
            )));
        }
        if profile.contains_key("role_arn") && !has_static && !profile.contains_key("web_identity_token_file") {
            return self.assume_role(source, visited).map(|r| r.temporary);
        }
        // Like the CLI: the source profile's own providers, without the environment.
        if let Some(found) = self.web_identity(Some(&profile), false)? {
            return Ok(found.temporary);
        }
        if let Some(found) = self.sso(source, Some(&profile))? {
            return Ok(found.temporary);
        }
        if let Some(keys) = self.files.credentials.get(source)
            && let Some(found) = static_keys(keys, &format!("profile {source_l} in the credentials file"))?
        {
            return Ok(found);
        }
        if let Some(found) = self.process(source, &profile)? {
            return Ok(found);
        }
        if let Some(keys) = self.files.config.get(source)
            && let Some(found) = static_keys(keys, &format!("profile {source_l} in the config file"))?
        {
            return Ok(found);
        }
        Err(Error::misconfigured(format!("the source profile {source_l} of profile {name_l} has no credentials")))
    }

    fn credential_source(&self, name: &str, source: &str) -> Result<Temporary, Error> {
        let name_l = self.label(name);
        match source {
            "Environment" => environment(self.sources)?.ok_or_else(|| {
                Error::misconfigured(format!(
                    "profile {name_l} has credential_source = Environment, but AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY are not in the plugin's environment ({GRANT_ENV})"
                ))
            }),
            "Ec2InstanceMetadata" | "EcsContainer" => Err(Error::misconfigured(format!(
                "profile {name_l}: credential_source = {source} is not supported; use Environment, a \
                 source_profile, or (in a container) AWS_CONTAINER_CREDENTIALS_FULL_URI"
            ))),
            other => Err(Error::misconfigured(format!(
                "profile {name_l}: credential_source must be Environment, Ec2InstanceMetadata or EcsContainer, not `{other}`"
            ))),
        }
    }

    /// AssumeRoleWithWebIdentity, when a token file is configured: the
    /// environment's (when `use_env`) before the profile's.
    fn web_identity(&self, profile: Option<&Section>, use_env: bool) -> Result<Option<Resolved>, Error> {
        let from =
            |variable: &str, key: &str| {
                use_env.then(|| self.sources.env(variable)).flatten().map(|v| (v, format!("${variable}"))).or_else(
                    || profile.and_then(|p| p.get(key).filter(|v| !v.is_empty())).map(|v| (v.clone(), v.clone())),
                )
            };
        let Some((path, shown)) = from("AWS_WEB_IDENTITY_TOKEN_FILE", "web_identity_token_file") else {
            return Ok(None);
        };
        let Some((role_arn, _)) = from("AWS_ROLE_ARN", "role_arn") else {
            return Err(Error::misconfigured(format!(
                "a web identity token file is configured ({shown}) but no role to assume: set AWS_ROLE_ARN \
                 (and grant it) or the profile's role_arn"
            )));
        };
        let session_name = use_env
            .then(|| self.sources.env("AWS_ROLE_SESSION_NAME"))
            .flatten()
            .unwrap_or_else(|| self.session_name(profile));
        let path = expand(&path, self.home.as_deref()).ok_or_else(|| {
            Error::misconfigured(format!("the web identity token file {shown} is under ~, and HOME is not granted"))
        })?;
        let token = match self.sources.read(&path) {
            Ok(Some(token)) if !token.trim().is_empty() => token.trim().to_string(),
            Ok(Some(_)) => return Err(Error::misconfigured(format!("the web identity token file {shown} is empty"))),
            Ok(None) => {
                return Err(Error::misconfigured(format!("the web identity token file {shown} does not exist")));
            }
            Err(FileError::NotGranted) => {
                return Err(Error::misconfigured(format!(
                    "the web identity token file {shown} is not granted: add it to grants.files"
                )));
            }
            Err(FileError::Unreadable(why)) => {
                return Err(Error::unavailable(format!("the web identity token file {shown}: {why}")));
            }
        };
        let request =
            WebIdentityRequest { role_arn: role_arn.clone(), session_name, token, region: self.region.clone() };
        let temporary = self.sources.assume_role_with_web_identity(&request)?;
        Ok(Some(Resolved {
            temporary,
            source: format!("web identity ({shown}): AssumeRoleWithWebIdentity {role_arn}"),
            region: self.region.clone(),
        }))
    }

    /// GetRoleCredentials with the token `aws sso login` cached, when profile
    /// `name` is an SSO profile.
    fn sso(&self, name: &str, profile: Option<&Section>) -> Result<Option<Resolved>, Error> {
        let name_l = self.label(name);
        let Some(profile) = profile else { return Ok(None) };
        let keys = ["sso_session", "sso_start_url", "sso_account_id", "sso_role_name"];
        if !keys.iter().any(|k| profile.contains_key(*k)) {
            return Ok(None);
        }
        let required = |key: &str| {
            profile
                .get(key)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| Error::misconfigured(format!("profile {name_l} is an SSO profile but has no {key}")))
        };
        let (account_id, role_name) = (required("sso_account_id")?, required("sso_role_name")?);
        let (cache_key, region, login_hint) = match profile.get("sso_session") {
            Some(session) => {
                let section = self.files.sso_sessions.get(session).ok_or_else(|| {
                    Error::misconfigured(format!(
                        "profile {name_l} names sso_session `{session}`, but the config file has no [sso-session {session}]"
                    ))
                })?;
                let region = section
                    .get("sso_region")
                    .cloned()
                    .ok_or_else(|| Error::misconfigured(format!("[sso-session {session}] has no sso_region")))?;
                (session.clone(), region, format!("--sso-session {session}"))
            }
            // The legacy form: the start URL and region in the profile.
            None => (required("sso_start_url")?, required("sso_region")?, format!("--profile {name}")),
        };
        let cache = {
            use sha1::Digest as _;
            let digest = hex::encode(sha1::Sha1::digest(cache_key.as_bytes()));
            let home = self.home.as_deref().ok_or_else(|| {
                Error::misconfigured(format!(
                    "profile {name_l} uses SSO, whose token is in ~/.aws/sso/cache/: HOME is not in the plugin's \
                     environment ({GRANT_ENV})"
                ))
            })?;
            Located {
                path: format!("{}/.aws/sso/cache/{digest}.json", home.trim_end_matches('/')),
                shown: format!("~/.aws/sso/cache/{digest}.json"),
            }
        };
        let login = format!("run `aws sso login {login_hint}`");
        let text = match self.sources.read(&cache.path) {
            Ok(Some(text)) => text,
            Ok(None) => {
                return Err(Error::denied(format!(
                    "profile {name_l}: no SSO login is cached ({}); {login}",
                    cache.shown
                )));
            }
            Err(FileError::NotGranted) => {
                return Err(Error::misconfigured(format!(
                    "profile {name_l}: the SSO token cache {} is not granted: add the directory (the absolute path of \
                     ~/.aws/sso/cache/) to grants.files",
                    cache.shown
                )));
            }
            Err(FileError::Unreadable(why)) => {
                return Err(Error::unavailable(format!("profile {name_l}: {}: {why}", cache.shown)));
            }
        };
        let cached: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::failed(format!("{} is not JSON ({e}); {login}", cache.shown)))?;
        let access_token = cached["accessToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::failed(format!("{} holds no accessToken; {login}", cache.shown)))?
            .to_string();
        let expires = cached["expiresAt"].as_str().and_then(parse_time);
        match expires {
            Some(expires) if expires > self.sources.now() => {}
            Some(_) => {
                return Err(Error::denied(format!("profile {name_l}: the SSO session has expired; {login}")));
            }
            None => return Err(Error::failed(format!("{} has no valid expiresAt; {login}", cache.shown))),
        }
        let request = SsoRequest {
            region,
            account_id: account_id.clone(),
            role_name: role_name.clone(),
            access_token,
            login_hint: login,
        };
        let temporary = self.sources.sso_role_credentials(&request)?;
        Ok(Some(Resolved {
            temporary,
            source: format!("profile {name_l}: SSO role {role_name} in account {account_id}"),
            region: self.region.clone(),
        }))
    }

    /// The credentials profile `name`'s `credential_process` prints, when it
    /// has one.
    fn process(&self, name: &str, profile: &Section) -> Result<Option<Temporary>, Error> {
        let Some(command_line) = profile.get("credential_process").filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        let what = format!("the credential_process of profile {}", self.label(name));
        let output = self.sources.credential_process(command_line).map_err(|e| within(&what, e))?;
        process_credentials(&output, &what).map(Some)
    }

    /// The container endpoint (ECS, EKS Pod Identity), when configured.
    fn container(&self) -> Result<Option<Resolved>, Error> {
        let url = match (
            self.sources.env("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            self.sources.env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        ) {
            (_, Some(relative)) => format!("http://169.254.170.2{relative}"),
            (Some(full), None) => {
                check_container_url(&full)?;
                full
            }
            (None, None) => return Ok(None),
        };
        let authorization = match self.sources.env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(path) => match self.sources.read(&path) {
                Ok(Some(token)) => Some(token.trim().to_string()),
                Ok(None) => {
                    return Err(Error::misconfigured(
                        "the file AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE names does not exist",
                    ));
                }
                Err(FileError::NotGranted) => {
                    return Err(Error::misconfigured(
                        "the file AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE names is not granted: add it to grants.files",
                    ));
                }
                Err(FileError::Unreadable(why)) => {
                    return Err(Error::unavailable(format!("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: {why}")));
                }
            },
            None => self.sources.env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        };
        let temporary = self.sources.container_credentials(&url, authorization.as_deref())?;
        Ok(Some(Resolved {
            temporary,
            source: "the container credentials endpoint".into(),
            region: self.region.clone(),
        }))
    }
}

/// The container endpoint must be HTTPS, or HTTP to loopback or the ECS and
/// EKS link-local addresses (as botocore allows).
fn check_container_url(url: &str) -> Result<(), Error> {
    let Some(rest) = url.strip_prefix("http://") else {
        return if url.starts_with("https://") {
            Ok(())
        } else {
            Err(Error::misconfigured("AWS_CONTAINER_CREDENTIALS_FULL_URI must be an http(s) URL"))
        };
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let allowed = host == "localhost"
        || host == "::1"
        || host == "169.254.170.2"
        || host == "169.254.170.23"
        || host.eq_ignore_ascii_case("fd00:ec2::23")
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
    if allowed {
        Ok(())
    } else {
        Err(Error::misconfigured(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI over plain http must be a loopback address or the ECS/EKS \
             endpoint (169.254.170.2, 169.254.170.23, fd00:ec2::23), as the AWS CLI requires",
        ))
    }
}

/// `error` with its message prefixed by `prefix`, of the same kind.
fn within(prefix: &str, error: Error) -> Error {
    let message = format!("{prefix}: {}", error.message());
    match error {
        Error::Misconfigured(_) => Error::misconfigured(message),
        Error::Denied(_) => Error::denied(message),
        Error::Unavailable(_) => Error::unavailable(message),
        Error::Throttled(_) => Error::throttled(message),
        Error::Failed(_) => Error::failed(message),
    }
}

/// The credentials in what a `credential_process` printed: the AWS CLI's
/// process credentials JSON, `Version` 1 with `AccessKeyId`,
/// `SecretAccessKey`, and optionally `SessionToken` and `Expiration`.
/// Errors say what is wrong without quoting the output (it holds secrets).
///
/// # Errors
///
/// [`Error::Failed`] for output that is not that JSON.
pub fn process_credentials(output: &str, what: &str) -> Result<Temporary, Error> {
    let failed = |why: String| Error::failed(format!("{what} printed {why}"));
    let value: serde_json::Value =
        serde_json::from_str(output).map_err(|e| failed(format!("no process credentials JSON ({e})")))?;
    let version = &value["Version"];
    if version.as_u64() != Some(1) {
        let shown = match version {
            serde_json::Value::Null => "none".to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => "that is not a number".to_string(),
        };
        return Err(failed(format!("Version {shown}; the AWS CLI's process credentials are Version 1")));
    }
    let text = |key: &str| value[key].as_str().filter(|v| !v.is_empty()).map(str::to_string);
    let required = |key: &str| text(key).ok_or_else(|| failed(format!("no {key}")));
    let credentials = Credentials {
        access_key_id: required("AccessKeyId")?,
        secret_access_key: required("SecretAccessKey")?,
        session_token: text("SessionToken"),
    };
    let expires_at = match &value["Expiration"] {
        serde_json::Value::Null => None,
        expiration => Some(
            expiration
                .as_str()
                .and_then(parse_time)
                .ok_or_else(|| failed("an Expiration that is not an ISO 8601 time".into()))?,
        ),
    };
    Ok(Temporary { credentials, expires_at })
}

/// Unix seconds of an RFC 3339 time (`2024-05-01T12:00:00Z`, fractions and
/// the CLI's old `UTC` suffix too).
pub fn parse_time(text: &str) -> Option<u64> {
    let text = text.trim();
    let normalised = match text.strip_suffix("UTC") {
        Some(rest) => format!("{rest}Z"),
        None => text.to_string(),
    };
    let time = humantime::parse_rfc3339_weak(normalised.trim_end_matches('Z')).ok()?;
    time.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Resolve the credentials, in the AWS CLI's order (see the module).
///
/// # Errors
///
/// [`Error::Misconfigured`] naming what to configure or grant when no source
/// has credentials or a configured one is incomplete; the errors of STS and
/// the SSO portal when they refuse.
pub fn resolve(sources: &dyn Sources) -> Result<Resolved, Error> {
    let mut notes = Vec::new();
    let explicit = sources.setting("profile");
    let (profile_name, named_by) =
        match (&explicit, sources.env("AWS_PROFILE").or_else(|| sources.env("AWS_DEFAULT_PROFILE"))) {
            (Some(name), _) => (name.clone(), Some("the profile setting")),
            (None, Some(name)) => (name, Some("AWS_PROFILE")),
            (None, None) => ("default".to_string(), None),
        };
    let config_file = locate(sources, "config-file", "AWS_CONFIG_FILE", ".aws/config", &mut notes);
    let credentials_file =
        locate(sources, "credentials-file", "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials", &mut notes);
    let text = |file: &Option<Located>, notes: &mut Vec<String>| {
        file.as_ref().and_then(|f| read_noted(sources, f, notes)).unwrap_or_default()
    };
    let config_text = text(&config_file, &mut notes);
    let credentials_text = text(&credentials_file, &mut notes);
    let files = SharedFiles::parse(&config_text, &credentials_text);
    let profile = files.profile(&profile_name);
    let region = sources
        .setting("region")
        .or_else(|| sources.env("AWS_REGION"))
        .or_else(|| sources.env("AWS_DEFAULT_REGION"))
        .or_else(|| profile.as_ref().and_then(|p| p.get("region").filter(|r| !r.is_empty()).cloned()))
        .unwrap_or_else(|| "us-east-1".into());
    let main_from_env = named_by == Some("AWS_PROFILE");
    let context = Context {
        sources,
        files,
        notes,
        home: sources.env("HOME"),
        region: region.clone(),
        main: profile_name.clone(),
        main_from_env,
    };
    let profile_l = context.label(&profile_name);
    let found =
        |temporary: Temporary, source: &str| Resolved { temporary, source: source.into(), region: region.clone() };

    // 1. Settings.
    if let Some(access_key_id) = sources.setting("access-key-id") {
        let secret_access_key = sources
            .setting("secret-access-key")
            .ok_or_else(|| Error::misconfigured("setting `access-key-id` is set but `secret-access-key` is not"))?;
        let session_token = sources.setting("session-token");
        return Ok(found(
            Temporary::lasting(Credentials { access_key_id, secret_access_key, session_token }),
            "settings",
        ));
    }
    let mut looked = vec!["settings access-key-id and secret-access-key: not set".to_string()];
    // 2. The environment, unless a profile is named explicitly.
    if explicit.is_some() {
        looked.push("environment: skipped, the profile setting names a profile".into());
    } else if let Some(keys) = environment(sources)? {
        return Ok(found(keys, "the environment"));
    } else {
        looked.push(format!(
            "environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not in the plugin's environment (set them, and {GRANT_ENV})"
        ));
    }
    if profile.is_none()
        && let Some(by) = named_by
    {
        let which = if main_from_env {
            "the profile AWS_PROFILE names".to_string()
        } else {
            format!("profile {profile_l} ({by})")
        };
        let mut message = format!("{which} is in neither the config nor the credentials file");
        if !context.notes.is_empty() {
            message.push_str(&format!(" ({})", context.notes.join("; ")));
        }
        return Err(Error::misconfigured(message));
    }
    // 3. The profile's role.
    if let Some(p) = &profile
        && p.contains_key("role_arn")
        && !p.contains_key("web_identity_token_file")
    {
        return context.assume_role(&profile_name, &mut Vec::new());
    }
    // 4. Web identity.
    if let Some(found) = context.web_identity(profile.as_ref(), true)? {
        return Ok(found);
    }
    looked.push("web identity: neither AWS_WEB_IDENTITY_TOKEN_FILE nor the profile's web_identity_token_file".into());
    // 5. SSO.
    if let Some(found) = context.sso(&profile_name, profile.as_ref())? {
        return Ok(found);
    }
    // 6.-8. The profile's keys, credential_process in between.
    if let Some(keys) = context.files.credentials.get(&profile_name)
        && let Some(keys) = static_keys(keys, &format!("profile {profile_l} in the credentials file"))?
    {
        return Ok(found(keys, &format!("profile {profile_l} in the credentials file")));
    }
    if let Some(p) = &profile
        && let Some(keys) = context.process(&profile_name, p)?
    {
        return Ok(found(keys, &format!("profile {profile_l}: credential_process")));
    }
    if let Some(keys) = context.files.config.get(&profile_name)
        && let Some(keys) = static_keys(keys, &format!("profile {profile_l} in the config file"))?
    {
        return Ok(found(keys, &format!("profile {profile_l} in the config file")));
    }
    looked.push(match &profile {
        Some(_) => format!("profile {profile_l}: no keys, role, web identity, SSO or credential_process settings"),
        None => format!("profile {profile_l}: not in the config or credentials file"),
    });
    // 9. The container endpoint.
    if let Some(found) = context.container()? {
        return Ok(found);
    }
    looked.push("container endpoint: AWS_CONTAINER_CREDENTIALS_FULL_URI is not set".into());
    looked.extend(context.notes.iter().cloned());
    Err(Error::misconfigured(format!("no AWS credentials found, in the AWS CLI's order: {}", looked.join("; "))))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;

    /// A sandbox of settings, a granted environment and files, recording
    /// what the chain asks of STS and the portal.
    #[derive(Default)]
    struct Fake {
        settings: BTreeMap<&'static str, &'static str>,
        env: BTreeMap<&'static str, &'static str>,
        files: BTreeMap<String, Result<String, FileError>>,
        calls: RefCell<Vec<String>>,
        interactive: bool,
        /// What each granted `credential_process` prints.
        processes: BTreeMap<&'static str, &'static str>,
    }

    const NOW: u64 = 1_714_564_800;

    impl Fake {
        fn home() -> Self {
            Self { env: [("HOME", "/home/alice")].into(), ..Self::default() }
        }
        fn file(mut self, path: &str, text: &str) -> Self {
            self.files.insert(path.to_string(), Ok(text.to_string()));
            self
        }
        fn denied(mut self, path: &str) -> Self {
            self.files.insert(path.to_string(), Err(FileError::NotGranted));
            self
        }
        fn env(mut self, name: &'static str, value: &'static str) -> Self {
            self.env.insert(name, value);
            self
        }
        fn setting(mut self, key: &'static str, value: &'static str) -> Self {
            self.settings.insert(key, value);
            self
        }
        fn process(mut self, command_line: &'static str, output: &'static str) -> Self {
            self.processes.insert(command_line, output);
            self
        }
        fn keys(id: &str) -> Temporary {
            Temporary::lasting(Credentials {
                access_key_id: id.into(),
                secret_access_key: "s".into(),
                session_token: None,
            })
        }
    }

    impl Sources for Fake {
        fn setting(&self, key: &str) -> Option<String> {
            self.settings.get(key).map(|v| v.to_string())
        }
        fn env(&self, name: &str) -> Option<String> {
            self.env.get(name).map(|v| v.to_string())
        }
        fn read(&self, path: &str) -> Result<Option<String>, FileError> {
            self.files.get(path).cloned().transpose()
        }
        fn now(&self) -> u64 {
            NOW
        }
        fn ask(&self, question: &str) -> Result<String, Error> {
            self.calls.borrow_mut().push(format!("ask {question}"));
            if self.interactive { Ok("123456".into()) } else { Err(Error::misconfigured("not interactive")) }
        }
        fn assume_role(&self, base: &Credentials, request: &RoleRequest) -> Result<Temporary, Error> {
            self.calls.borrow_mut().push(format!(
                "AssumeRole {} as {} with {} mfa {:?} in {}",
                request.role_arn, request.session_name, base.access_key_id, request.mfa, request.region
            ));
            Ok(Temporary { expires_at: Some(NOW + 900), ..Self::keys(&format!("ASIA-{}", request.role_arn)) })
        }
        fn assume_role_with_web_identity(&self, request: &WebIdentityRequest) -> Result<Temporary, Error> {
            self.calls.borrow_mut().push(format!(
                "AssumeRoleWithWebIdentity {} as {} with {}",
                request.role_arn, request.session_name, request.token
            ));
            Ok(Self::keys("ASIA-web"))
        }
        fn sso_role_credentials(&self, request: &SsoRequest) -> Result<Temporary, Error> {
            self.calls.borrow_mut().push(format!(
                "GetRoleCredentials {} {} in {} with {}",
                request.account_id, request.role_name, request.region, request.access_token
            ));
            Ok(Self::keys("ASIA-sso"))
        }
        fn container_credentials(&self, url: &str, authorization: Option<&str>) -> Result<Temporary, Error> {
            self.calls.borrow_mut().push(format!("container {url} {authorization:?}"));
            Ok(Self::keys("ASIA-container"))
        }
        fn credential_process(&self, command_line: &str) -> Result<String, Error> {
            self.calls.borrow_mut().push(format!("process {command_line}"));
            self.processes.get(command_line).map(|o| o.to_string()).ok_or_else(|| {
                Error::misconfigured("denied by policy: not granted: add it to grants.credential-process")
            })
        }
    }

    fn key_of(resolved: &Resolved) -> &str {
        &resolved.temporary.credentials.access_key_id
    }

    const CONFIG: &str = "/home/alice/.aws/config";
    const CREDENTIALS: &str = "/home/alice/.aws/credentials";

    #[test]
    fn settings_then_the_environment_then_profile_keys_and_a_named_profile_skips_the_environment() {
        let files = || {
            Fake::home()
                .file(CREDENTIALS, "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n[ci]\naws_access_key_id = AKIACI\naws_secret_access_key = s\n")
                .file(CONFIG, "[default]\nregion = eu-west-1\n")
        };
        let fake = files().env("AWS_ACCESS_KEY_ID", "AKIAENV").env("AWS_SECRET_ACCESS_KEY", "s");
        assert_eq!(key_of(&resolve(&fake).unwrap()), "AKIAENV");
        assert_eq!(resolve(&fake).unwrap().region, "eu-west-1", "the profile's region");
        let settings = fake.setting("access-key-id", "AKIASET").setting("secret-access-key", "s");
        assert_eq!(key_of(&resolve(&settings).unwrap()), "AKIASET");
        let named =
            files().env("AWS_ACCESS_KEY_ID", "AKIAENV").env("AWS_SECRET_ACCESS_KEY", "s").setting("profile", "ci");
        assert_eq!(key_of(&resolve(&named).unwrap()), "AKIACI", "--profile skips the environment");
        let by_env =
            files().env("AWS_ACCESS_KEY_ID", "AKIAENV").env("AWS_SECRET_ACCESS_KEY", "s").env("AWS_PROFILE", "ci");
        assert_eq!(key_of(&resolve(&by_env).unwrap()), "AKIAENV", "AWS_PROFILE does not");
        assert_eq!(key_of(&resolve(&files()).unwrap()), "AKIAFILE");
        let region = files().env("AWS_REGION", "ap-south-1").env("AWS_DEFAULT_REGION", "us-west-2");
        assert_eq!(resolve(&region).unwrap().region, "ap-south-1");
        let partial = Fake::default().env("AWS_ACCESS_KEY_ID", "AKIA");
        assert!(
            resolve(&partial)
                .unwrap_err()
                .message()
                .contains("the environment has AWS_ACCESS_KEY_ID but not AWS_SECRET_ACCESS_KEY; set and grant both")
        );
    }

    #[test]
    fn roles_chain_through_source_profiles_with_mfa_and_loops_are_refused() {
        let config = "[profile admin]\nrole_arn = arn:aws:iam::1:role/admin\nsource_profile = dev\nmfa_serial = arn:aws:iam::1:mfa/alice\n\
                      [profile dev]\nrole_arn = arn:aws:iam::1:role/dev\nsource_profile = base\nrole_session_name = alice\n\
                      [profile base]\nregion = eu-central-1\n\
                      [profile env]\nrole_arn = arn:aws:iam::1:role/env\ncredential_source = Environment\n\
                      [profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n[profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = a\n";
        let fake = Fake { interactive: true, ..Fake::home() }
            .file(CONFIG, config)
            .file(CREDENTIALS, "[base]\naws_access_key_id = AKIABASE\naws_secret_access_key = s\n")
            .setting("profile", "admin");
        let resolved = resolve(&fake).unwrap();
        assert_eq!(key_of(&resolved), "ASIA-arn:aws:iam::1:role/admin");
        assert_eq!(resolved.temporary.expires_at, Some(NOW + 900));
        assert_eq!(
            fake.calls.borrow().as_slice(),
            [
                "AssumeRole arn:aws:iam::1:role/dev as alice with AKIABASE mfa None in us-east-1",
                "ask MFA code for arn:aws:iam::1:mfa/alice:",
                "AssumeRole arn:aws:iam::1:role/admin as credbroker with ASIA-arn:aws:iam::1:role/dev mfa Some((\"arn:aws:iam::1:mfa/alice\", \"123456\")) in us-east-1",
            ]
        );
        let looping = Fake::home().file(CONFIG, config).setting("profile", "a");
        assert!(resolve(&looping).unwrap_err().message().contains("the source_profile chain loops: a -> b -> a"));
        let no_mfa = Fake::home()
            .file(CONFIG, config)
            .file(CREDENTIALS, "[base]\naws_access_key_id = K\naws_secret_access_key = s\n")
            .setting("profile", "admin");
        assert!(resolve(&no_mfa).unwrap_err().message().contains("profile `admin` needs an MFA code (mfa_serial)"));
        let env = Fake::home()
            .file(CONFIG, config)
            .env("AWS_PROFILE", "env")
            .env("AWS_ACCESS_KEY_ID", "AKIAENV")
            .env("AWS_SECRET_ACCESS_KEY", "s");
        // The environment's keys come first in the chain, as for the CLI.
        assert_eq!(key_of(&resolve(&env).unwrap()), "AKIAENV");
        let env_source = Fake::home()
            .file(CONFIG, config)
            .setting("profile", "env")
            .env("AWS_ACCESS_KEY_ID", "AKIAENV")
            .env("AWS_SECRET_ACCESS_KEY", "s");
        assert_eq!(key_of(&resolve(&env_source).unwrap()), "ASIA-arn:aws:iam::1:role/env");
    }

    #[test]
    fn web_identity_from_the_environment_or_the_profile_needs_its_file_granted() {
        let fake = Fake::default()
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token")
            .env("AWS_ROLE_ARN", "arn:aws:iam::1:role/pod")
            .env("AWS_ROLE_SESSION_NAME", "pod-session")
            .file("/var/run/secrets/eks.amazonaws.com/serviceaccount/token", "eyJ-token\n");
        assert_eq!(key_of(&resolve(&fake).unwrap()), "ASIA-web");
        assert_eq!(
            fake.calls.borrow()[0],
            "AssumeRoleWithWebIdentity arn:aws:iam::1:role/pod as pod-session with eyJ-token"
        );
        let denied = Fake::default()
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")
            .env("AWS_ROLE_ARN", "arn:aws:iam::1:role/pod")
            .denied("/t");
        let error = resolve(&denied).unwrap_err();
        assert!(
            matches!(&error, Error::Misconfigured(m) if m.contains("$AWS_WEB_IDENTITY_TOKEN_FILE is not granted: add it to grants.files")),
            "{error:?}"
        );
        let no_role = Fake::default().env("AWS_WEB_IDENTITY_TOKEN_FILE", "/t").file("/t", "x");
        assert!(resolve(&no_role).unwrap_err().message().contains("no role to assume: set AWS_ROLE_ARN"));
        let profile = Fake::home()
            .file(CONFIG, "[default]\nweb_identity_token_file = ~/token\nrole_arn = arn:aws:iam::1:role/p\n")
            .file("/home/alice/token", "tok");
        assert_eq!(key_of(&resolve(&profile).unwrap()), "ASIA-web");
    }

    #[test]
    fn sso_profiles_use_the_cached_login_or_say_to_log_in() {
        use sha1::Digest as _;
        let config = "[profile sso]\nsso_session = corp\nsso_account_id = 111122223333\nsso_role_name = Admin\n\
                      [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n";
        let cache = format!("/home/alice/.aws/sso/cache/{}.json", hex::encode(sha1::Sha1::digest(b"corp")));
        let fresh = r#"{"startUrl": "https://corp.awsapps.com/start", "region": "eu-west-1", "accessToken": "aoa-token", "expiresAt": "2024-05-01T13:00:00Z"}"#;
        let fake = Fake::home().file(CONFIG, config).file(&cache, fresh).env("AWS_PROFILE", "sso");
        assert_eq!(key_of(&resolve(&fake).unwrap()), "ASIA-sso");
        assert_eq!(fake.calls.borrow()[0], "GetRoleCredentials 111122223333 Admin in eu-west-1 with aoa-token");
        let expired =
            Fake::home().file(CONFIG, config).file(&cache, &fresh.replace("13:00", "11:00")).env("AWS_PROFILE", "sso");
        let error = resolve(&expired).unwrap_err();
        assert!(
            matches!(&error, Error::Denied(m) if m.contains("the SSO session has expired; run `aws sso login --sso-session corp`")),
            "{error:?}"
        );
        let missing = Fake::home().file(CONFIG, config).env("AWS_PROFILE", "sso");
        assert!(resolve(&missing).unwrap_err().message().contains("no SSO login is cached"));
        let denied = Fake::home().file(CONFIG, config).denied(&cache).env("AWS_PROFILE", "sso");
        assert!(
            resolve(&denied)
                .unwrap_err()
                .message()
                .contains("is not granted: add the directory (the absolute path of ~/.aws/sso/cache/)")
        );
        // The legacy form keys the cache by the start URL.
        let legacy = "[default]\nsso_start_url = https://old.awsapps.com/start\nsso_region = us-east-1\nsso_account_id = 1\nsso_role_name = R\n";
        let legacy_cache = format!(
            "/home/alice/.aws/sso/cache/{}.json",
            hex::encode(sha1::Sha1::digest(b"https://old.awsapps.com/start"))
        );
        let fake = Fake::home().file(CONFIG, legacy).file(&legacy_cache, &fresh.replace("Z\"", "UTC\""));
        assert_eq!(key_of(&resolve(&fake).unwrap()), "ASIA-sso");
    }

    const PROCESS_OUTPUT: &str = r#"{"Version": 1, "AccessKeyId": "ASIAPROC", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": "2024-05-01T13:00:00Z"}"#;

    #[test]
    fn credential_process_comes_after_the_credentials_file_and_before_the_config_keys() {
        let config = "[default]\ncredential_process = aws-vault export --format=json corp\naws_access_key_id = AKIACONFIG\naws_secret_access_key = s\n";
        let fake = Fake::home().file(CONFIG, config).process("aws-vault export --format=json corp", PROCESS_OUTPUT);
        let resolved = resolve(&fake).unwrap();
        assert_eq!(key_of(&resolved), "ASIAPROC", "before the config file's keys");
        assert_eq!(resolved.temporary.credentials.session_token.as_deref(), Some("t"));
        assert_eq!(resolved.temporary.expires_at, Some(NOW + 3600), "the token expiry follows Expiration");
        assert_eq!(resolved.source, "profile `default`: credential_process");
        assert_eq!(fake.calls.borrow().as_slice(), ["process aws-vault export --format=json corp"]);
        let with_file = Fake::home()
            .file(CONFIG, config)
            .file(CREDENTIALS, "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n")
            .process("aws-vault export --format=json corp", PROCESS_OUTPUT);
        assert_eq!(key_of(&resolve(&with_file).unwrap()), "AKIAFILE", "after the credentials file");
        assert!(with_file.calls.borrow().is_empty(), "and then it never runs");

        // A role's source profile may get its keys from a process too.
        let chained = Fake::home()
            .file(CONFIG, "[profile admin]\nrole_arn = arn:aws:iam::1:role/admin\nsource_profile = tool\n[profile tool]\ncredential_process = /opt/bin/creds --profile dev\n")
            .process("/opt/bin/creds --profile dev", r#"{"Version": 1, "AccessKeyId": "AKIAPROC", "SecretAccessKey": "s"}"#)
            .setting("profile", "admin");
        assert_eq!(key_of(&resolve(&chained).unwrap()), "ASIA-arn:aws:iam::1:role/admin");
        assert_eq!(
            chained.calls.borrow()[1],
            "AssumeRole arn:aws:iam::1:role/admin as credbroker with AKIAPROC mfa None in us-east-1"
        );
    }

    #[test]
    fn a_credential_process_that_is_not_granted_or_prints_nonsense_is_an_error_naming_the_profile() {
        let fake = Fake::home()
            .file(CONFIG, "[profile tool]\ncredential_process = /usr/bin/vault-aws\n")
            .env("AWS_PROFILE", "tool");
        let error = resolve(&fake).unwrap_err();
        assert!(
            matches!(&error, Error::Misconfigured(m) if m.starts_with("the credential_process of profile $AWS_PROFILE: ") && m.contains("grants.credential-process")),
            "{error:?}"
        );
        for (output, why) in [
            ("not json", "printed no process credentials JSON"),
            (
                r#"{"Version": 2, "AccessKeyId": "A", "SecretAccessKey": "s"}"#,
                "printed Version 2; the AWS CLI's process credentials are Version 1",
            ),
            (r#"{"AccessKeyId": "A", "SecretAccessKey": "s"}"#, "printed Version none"),
            (r#"{"Version": 1, "SecretAccessKey": "hush"}"#, "printed no AccessKeyId"),
            (r#"{"Version": 1, "AccessKeyId": "A"}"#, "printed no SecretAccessKey"),
            (
                r#"{"Version": 1, "AccessKeyId": "A", "SecretAccessKey": "hush", "Expiration": "soon"}"#,
                "an Expiration that is not an ISO 8601 time",
            ),
        ] {
            let error = process_credentials(output, "the credential_process of profile `tool`").unwrap_err();
            assert!(
                matches!(&error, Error::Failed(m) if m.contains(why) && !m.contains("hush")),
                "{output}: {error:?}"
            );
        }
    }

    #[test]
    fn the_container_endpoint_comes_last_and_must_be_safe() {
        let fake = Fake::default()
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials")
            .env(
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
            )
            .file("/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token", "pod-token\n");
        assert_eq!(key_of(&resolve(&fake).unwrap()), "ASIA-container");
        assert_eq!(fake.calls.borrow()[0], "container http://169.254.170.23/v1/credentials Some(\"pod-token\")");
        for (url, ok) in [
            ("http://127.0.0.1:9/x", true),
            ("http://[::1]:9/", true),
            ("https://creds.example/", true),
            ("http://10.0.0.1/", false),
            ("http://169.254.169.254/", false),
            ("ftp://x/", false),
        ] {
            assert_eq!(check_container_url(url).is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn nothing_found_says_where_it_looked_and_what_to_grant() {
        let fake = Fake::home().denied(CONFIG);
        let error = resolve(&fake).unwrap_err().message().to_string();
        for part in [
            "no AWS credentials found, in the AWS CLI's order: ",
            "environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not in the plugin's environment",
            "~/.aws/config is not granted: add its absolute path (or the directory ~/.aws/) to grants.files",
            "~/.aws/credentials does not exist",
        ] {
            assert!(error.contains(part), "{part:?} in {error}");
        }
        let no_home = resolve(&Fake::default()).unwrap_err().message().to_string();
        assert!(no_home.contains("~/.aws/config: HOME is not in the plugin's environment"), "{no_home}");
        let unknown = Fake::home().env("AWS_PROFILE", "nope").denied(CONFIG);
        let error = resolve(&unknown).unwrap_err().message().to_string();
        assert!(error.starts_with("the profile AWS_PROFILE names is in neither the config nor the credentials file (~/.aws/config is not granted"), "{error}");
    }

    #[test]
    fn times_parse_in_the_clis_formats() {
        assert_eq!(parse_time("2024-05-01T12:00:00Z"), Some(NOW));
        assert_eq!(parse_time("2024-05-01T12:00:00UTC"), Some(NOW));
        assert_eq!(parse_time("2024-05-01T12:00:00.490305Z"), Some(NOW));
        assert_eq!(parse_time("soon"), None);
    }
}
