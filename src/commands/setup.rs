//! `credbroker setup`: log in to an OpenID Connect provider once, as
//! kubelogin's `setup` does, and print what the token says and the
//! configuration that uses it: the profile, the kubeconfig command, the
//! `jwt` validator for `credbroker serve`, and an RBAC binding for the user.
//!
//! Nothing is stored: the login runs with a fresh in-memory state (no refresh
//! token is kept or used) and without the credential cache, and the token
//! itself is never printed, only its claims.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Args;
use credbroker_host::bindings::types::{CredentialRequest, CredentialSecret, Setting};
use credbroker_host::capabilities::{Grants, StateStore, StdioTerminal};
use credbroker_host::config::{ClientConfig, PluginSpec};
use credbroker_host::dirs::Dirs;
use credbroker_host::limits::Limits;
use credbroker_host::plugin::PluginRef;
use credbroker_host::runtime::{Allocation, Runtime, RuntimeOptions, Sandbox, SandboxSpec, World};
use credbroker_host::settings::{ResolvedSettings, parse_key_value};
use serde_json::Value;

/// Arguments of `credbroker setup`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    credbroker setup --issuer https://login.corp.example --client-id kubernetes\n  \
    credbroker setup --issuer https://login.corp.example --client-id kubernetes --flow device\n  \
    credbroker setup --provider corp          (a profile of the config file)\n\n\
    Logs in once (the login's messages go to stderr) and prints, on stdout, the token's claims, the profile, \
    the `credbroker kubeconfig` command and the `jwt` validator for serve.toml that maps those claims. \
    Nothing is stored and the token is not printed.")]
pub struct SetupArgs {
    /// Set up from this profile of the config file (its settings, grants and limits).
    #[arg(long, conflicts_with_all = ["issuer", "client_id", "client_secret", "flow", "ca_file"])]
    provider: Option<String>,
    /// The OpenID Connect issuer URL (discovery is ISSUER/.well-known/openid-configuration).
    #[arg(long, required_unless_present = "provider", value_name = "URL")]
    issuer: Option<String>,
    /// The client id registered for Kubernetes.
    #[arg(long, required_unless_present = "provider", value_name = "ID")]
    client_id: Option<String>,
    /// The client secret of a confidential client: env:NAME or file:PATH.
    #[arg(long, value_name = "env:NAME|file:PATH")]
    client_secret: Option<String>,
    /// The login flow: auth-code (a browser on this machine), auth-code-keyboard, device or password.
    #[arg(long, default_value = "auth-code")]
    flow: Option<String>,
    /// A PEM bundle of the CAs the issuer's TLS certificate chains to (instead of the system's).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Another oidc setting (scopes, login-hint, auth-params...); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The profile name the printed configuration uses [default: the --provider, else oidc].
    #[arg(long)]
    name: Option<String>,
    /// The configuration file of --provider [default: ~/.config/credbroker/config.toml].
    #[arg(long, env = "CREDBROKER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// What `setup` logs in with, and whether it came from flags.
struct Plan {
    name: String,
    spec: PluginSpec,
    /// The grants, as the printed profile writes them.
    grants: toml::Table,
    from_flags: bool,
}

/// `scheme://host[:port]` of `url`.
fn origin(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("--issuer {url:?} is not a URL"))?;
    if parsed.scheme() != "https" {
        bail!("--issuer {url:?} must be an https URL");
    }
    Ok(parsed.origin().ascii_serialization())
}

fn plan(args: &SetupArgs, dirs: &Dirs) -> anyhow::Result<Plan> {
    let set = args.set.iter().map(|arg| parse_key_value(arg)).collect::<Result<Vec<_>, _>>().context("--set")?;
    if let Some(name) = &args.provider {
        let config = match &args.config {
            Some(path) => ClientConfig::load(path, false)?,
            None => ClientConfig::load(&dirs.config_file, true)?,
        };
        let profile = config.profiles.get(name).with_context(|| {
            format!("no profile `{}` in the configuration", credbroker_host::boundary::text::name(name))
        })?;
        let mut spec = profile.spec();
        spec.settings.extend(set);
        let name = args.name.clone().unwrap_or_else(|| name.clone());
        return Ok(Plan { name, spec, grants: toml::Table::new(), from_flags: false });
    }
    let (Some(issuer), Some(client_id)) = (&args.issuer, &args.client_id) else {
        bail!("name the provider with --issuer URL --client-id ID, or a profile with --provider NAME");
    };
    let flow = args.flow.clone().unwrap_or_else(|| "auth-code".into());
    let mut spec = PluginSpec { plugin: "oidc".into(), ..PluginSpec::default() };
    spec.settings.insert("issuer".into(), issuer.clone());
    spec.settings.insert("client-id".into(), client_id.clone());
    spec.settings.insert("flow".into(), flow.clone());
    if let Some(secret) = &args.client_secret {
        if !secret.starts_with("env:") && !secret.starts_with("file:") {
            bail!(
                "--client-secret takes env:NAME or file:PATH, so the secret stays out of shell history and the printed profile"
            );
        }
        spec.settings.insert("client-secret".into(), secret.clone());
    }
    spec.settings.extend(set);
    let mut grants = toml::Table::new();
    grants.insert("http".into(), toml::Value::Array(vec![toml::Value::String(origin(issuer)?)]));
    if let Some(ca) = &args.ca_file {
        let ca = std::path::absolute(ca).with_context(|| format!("--ca-file {}", ca.display()))?;
        grants.insert("ca-file".into(), toml::Value::String(ca.display().to_string()));
    }
    if flow == "auth-code" {
        grants.insert("redirect-listener".into(), toml::Value::Boolean(true));
        grants.insert("open-browser".into(), toml::Value::Boolean(true));
    }
    spec.grants = Grants::from_table(grants.clone());
    // A person logs in: give them the time they need.
    spec.limits = Limits { timeout_ms: 300_000, ..Limits::default() };
    Ok(Plan { name: args.name.clone().unwrap_or_else(|| "oidc".into()), spec, grants, from_flags: true })
}

/// Log in once with `spec`: the token the provider returns.
fn log_in(spec: &PluginSpec, dirs: &Dirs) -> anyhow::Result<String> {
    let plugin = PluginRef::locate(&spec.plugin, std::slice::from_ref(&dirs.plugins))?;
    if let Some(pin) = &spec.sha256 {
        plugin.verify_pin(pin)?;
    }
    let settings = ResolvedSettings::resolve(&spec.settings)?;
    let settings_list: Vec<Setting> =
        settings.iter().map(|(k, v)| Setting { key: k.to_string(), value: v.to_string() }).collect();
    let sandbox = Sandbox::new(SandboxSpec {
        settings,
        grants: &spec.grants,
        limits: spec.limits.clone(),
        terminal: Arc::new(StdioTerminal),
        // A login of its own: no stored refresh token is used, none is kept.
        state: StateStore::memory(),
    })?;
    let runtime =
        Runtime::new(RuntimeOptions { allocation: Allocation::OnDemand, artifact_dir: Some(dirs.artifacts()) })?;
    let loaded = runtime.load(&plugin, World::Provider)?;
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting")?;
    // Whoever runs setup is at the terminal: the login may ask them.
    let request = CredentialRequest { settings: settings_list, interactive: true, cluster: None };
    let credential = tokio.block_on(loaded.get_credential(runtime.engine(), &sandbox, request))?;
    match credential.secret {
        CredentialSecret::Token(token) => Ok(token),
        CredentialSecret::ClientCertificate(_) => bail!("the provider gave a client certificate, not a token"),
    }
}

/// The claims of a JWT (its signature is the validator's business).
fn claims(token: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let payload = token.split('.').nth(1).context("the token is not a JWT, so it has no claims to show")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .context("the token's payload is not base64url")?;
    match serde_json::from_slice(&bytes).context("the token's payload is not JSON")? {
        Value::Object(map) => Ok(map),
        _ => bail!("the token's payload is not a JSON object"),
    }
}

/// `value` as a TOML string.
fn toml_str(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// The `jwt` validator's settings that map these claims.
struct Mapping {
    issuer: String,
    audiences: String,
    username_claim: &'static str,
    username: String,
    groups: Option<Vec<String>>,
}

const PREFIX: &str = "oidc:";

fn mapping(claims: &serde_json::Map<String, Value>) -> anyhow::Result<Mapping> {
    let issuer = claims.get("iss").and_then(Value::as_str).context("the token has no `iss` claim")?.to_string();
    let audiences = match claims.get("aud") {
        Some(Value::String(aud)) => aud.clone(),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
        _ => bail!("the token has no `aud` claim: a validator could not check whom it is for"),
    };
    // kube-apiserver refuses an unverified email as a username; so does the jwt validator.
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .filter(|_| claims.get("email_verified") == Some(&Value::Bool(true)));
    let (username_claim, username) = match email {
        Some(email) => ("email", email.to_string()),
        None => ("sub", claims.get("sub").and_then(Value::as_str).context("the token has no `sub` claim")?.to_string()),
    };
    let groups = match claims.get("groups") {
        Some(Value::Array(list)) => Some(list.iter().filter_map(Value::as_str).map(str::to_string).collect()),
        Some(Value::String(group)) => Some(vec![group.clone()]),
        _ => None,
    };
    Ok(Mapping { issuer, audiences, username_claim, username, groups })
}

/// What `setup` prints after the login.
fn report(plan: &Plan, claims: &serde_json::Map<String, Value>) -> anyhow::Result<String> {
    let map = mapping(claims)?;
    let mut out = String::new();
    let pretty = serde_json::to_string_pretty(claims).context("encoding the claims")?;
    out.push_str(&format!("## The token's claims\n\n{pretty}\n\n"));

    let name = &plan.name;
    if plan.from_flags {
        let mut profile = format!("[profiles.{name}]\nplugin = \"oidc\"\n[profiles.{name}.settings]\n");
        for (key, value) in &plan.spec.settings {
            profile.push_str(&format!("{key} = {}\n", toml_str(value)));
        }
        let grants = toml::to_string(&plan.grants).context("encoding the grants")?;
        profile.push_str(&format!("[profiles.{name}.grants]\n{grants}[profiles.{name}.limits]\ntimeout-ms = 300000\n"));
        out.push_str(&format!("## The profile, for ~/.config/credbroker/config.toml\n\n{profile}\n"));
    }
    out.push_str(&format!(
        "## The kubeconfig user (and a context for your cluster)\n\n\
         credbroker kubeconfig --provider {name} --context CONTEXT --cluster CLUSTER --use-context\n\n"
    ));

    let mut validator = format!(
        "[[validators]]\nname = {}\nplugin = \"jwt\"\n[validators.settings]\nissuer = {}\naudiences = {}\n\
         username-claim = \"{}\"\nusername-prefix = \"{PREFIX}\"\n",
        toml_str(name),
        toml_str(&map.issuer),
        toml_str(&map.audiences),
        map.username_claim
    );
    match &map.groups {
        Some(_) => validator.push_str(&format!("groups-claim = \"groups\"\ngroups-prefix = \"{PREFIX}\"\n")),
        None => validator.push_str(
            "# The token has no `groups` claim: ask for the `groups` scope (scopes setting) if the provider has one.\n",
        ),
    }
    validator.push_str("[validators.grants]\n");
    if let Ok(issuer_origin) = origin(&map.issuer) {
        validator.push_str(&format!("http = [{}]\n", toml_str(&issuer_origin)));
    }
    if let Some(ca) = plan.spec.grants.get::<String>("ca-file") {
        validator.push_str(&format!("ca-file = {}\n", toml_str(&ca)));
    }
    out.push_str(&format!("## The validator, for credbroker serve (serve.toml)\n\n{validator}\n"));

    let user = format!("{PREFIX}{}", map.username);
    out.push_str(&format!(
        "## Who the API server will see\n\nuser {user}{}\n\n\
         kubectl create clusterrolebinding {} --clusterrole=view --user={}\n",
        map.groups
            .as_ref()
            .map(|g| format!(", groups {}", g.iter().map(|g| format!("{PREFIX}{g}")).collect::<Vec<_>>().join(", ")))
            .unwrap_or_default(),
        binding_name(&map.username),
        shell_word(&user),
    ));
    Ok(out)
}

/// A Kubernetes object name for `user`'s binding.
fn binding_name(user: &str) -> String {
    let safe: String =
        user.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).take(50).collect();
    format!("oidc-{}-view", safe.trim_matches('-'))
}

/// `word` quoted for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    if word.chars().all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Run `credbroker setup`.
pub fn run(args: SetupArgs) -> anyhow::Result<ExitCode> {
    let dirs = Dirs::of_user().map_err(anyhow::Error::msg)?;
    let plan = plan(&args, &dirs)?;
    let token = log_in(&plan.spec, &dirs)?;
    let claims = claims(&token)?;
    let report = report(&plan, &claims)?;
    // Claims come from the provider: nothing in them may drive the terminal.
    print!("{}", credbroker_host::boundary::text::multi_line(&report));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims_of(json: Value) -> serde_json::Map<String, Value> {
        match json {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn verified_emails_and_groups_map_and_the_rest_falls_back() {
        let map = mapping(&claims_of(serde_json::json!({
            "iss": "https://idp", "aud": ["k8s", "other"], "sub": "u1",
            "email": "a@corp", "email_verified": true, "groups": ["devs"],
        })))
        .unwrap();
        assert_eq!(
            (map.username_claim, map.username.as_str(), map.audiences.as_str()),
            ("email", "a@corp", "k8s,other")
        );
        assert_eq!(map.groups, Some(vec!["devs".to_string()]));
        let map = mapping(&claims_of(serde_json::json!({
            "iss": "https://idp", "aud": "k8s", "sub": "u1", "email": "a@corp", "email_verified": false,
        })))
        .unwrap();
        assert_eq!((map.username_claim, map.username.as_str(), map.groups), ("sub", "u1", None));
        assert!(mapping(&claims_of(serde_json::json!({"iss": "https://idp", "sub": "u"}))).is_err());
    }

    #[test]
    fn names_and_words_are_safe() {
        assert_eq!(binding_name("Alice@Corp.example"), "oidc-alice-corp-example-view");
        assert_eq!(shell_word("oidc:alice@corp"), "oidc:alice@corp");
        assert_eq!(shell_word("oidc:it's me"), r"'oidc:it'\''s me'");
        let quoted: toml::Table = toml::from_str(&format!("v = {}", toml_str("a\"b'\u{1b}"))).unwrap();
        assert_eq!(quoted["v"].as_str(), Some("a\"b'\u{1b}"));
    }

    #[test]
    fn only_jwts_have_claims() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        assert_eq!(claims(&format!("h.{payload}.s")).unwrap()["sub"], "x");
        assert!(claims("opaque").unwrap_err().to_string().contains("not a JWT"));
    }
}
