//! `credbroker get`: print an ExecCredential for kubectl.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use credbroker_host::exec::credential::{ApiVersion, ExecInfoError};
use credbroker_host::exec::{self, GetRequest, Selection};
use credbroker_host::settings::parse_key_value;

/// Arguments of `credbroker get`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  credbroker get --provider static --set token=env:MY_TOKEN\n  credbroker get --provider corp-ldap          (a profile in the config file)\n  credbroker get --plugin ./my-provider.wasm --set url=https://idp.example --allow-http https://idp.example"
)]
pub struct GetArgs {
    /// The provider: a profile of the config file, or a bundled or installed plugin.
    #[arg(long, env = "CREDBROKER_PROVIDER", conflicts_with = "plugin", required_unless_present = "plugin")]
    provider: Option<String>,
    /// Run this plugin file (.wasm) instead of a named provider.
    #[arg(long, env = "CREDBROKER_PLUGIN", value_name = "PATH")]
    plugin: Option<PathBuf>,
    /// A plugin setting; repeatable. VALUE may be env:NAME or file:PATH.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The configuration file [default: ~/.config/credbroker/config.toml].
    #[arg(long, env = "CREDBROKER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// ExecCredential version when KUBERNETES_EXEC_INFO is absent.
    #[arg(long, value_name = "v1|v1beta1", value_parser = parse_api_version)]
    api_version: Option<ApiVersion>,
    /// Neither read nor write the credential cache.
    #[arg(long)]
    no_cache: bool,
    /// Also allow the plugin to reach this origin (https://host[:port]); repeatable.
    #[arg(long, value_name = "ORIGIN")]
    allow_http: Vec<String>,
    /// Also allow the plugin to read this file; repeatable.
    #[arg(long, value_name = "PATH")]
    allow_file: Vec<PathBuf>,
}

fn parse_api_version(text: &str) -> Result<ApiVersion, String> {
    ApiVersion::parse(text).ok_or_else(|| format!("`{text}` is not v1 or v1beta1"))
}

/// Run `credbroker get`.
pub fn run(args: GetArgs) -> anyhow::Result<ExitCode> {
    let selection = match (args.provider, args.plugin) {
        (_, Some(path)) => Selection::Plugin(path),
        (Some(name), None) => Selection::Provider(name),
        (None, None) => anyhow::bail!(
            "name a provider with --provider NAME (or CREDBROKER_PROVIDER), or a plugin with --plugin PATH"
        ),
    };
    let set = args.set.iter().map(|arg| parse_key_value(arg)).collect::<Result<Vec<_>, _>>().context("--set")?;
    // Unreadable is not absent: answering a v1 client in v1beta1 would only
    // move the error into kubectl.
    let exec_info = match std::env::var("KUBERNETES_EXEC_INFO") {
        Ok(info) => Some(info),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => return Err(ExecInfoError::NotUtf8.into()),
    };
    let request = GetRequest {
        selection,
        set,
        config: args.config,
        api_version: args.api_version,
        exec_info,
        no_cache: args.no_cache,
        allow_http: args.allow_http,
        allow_file: args.allow_file,
        stdin_is_terminal: std::io::stdin().is_terminal(),
    };
    let credential = exec::get(&request)?;
    let mut json = serde_json::to_vec(&credential).context("encoding the ExecCredential")?;
    json.push(b'\n');
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&json).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // kubectl went away; nobody is left to read the credential.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::FAILURE),
        Err(e) => Err(e).context("writing the ExecCredential to stdout"),
    }
}
