//! `credbroker doctor`: check the set-up end to end and say what to fix.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use std::sync::Arc;

use credbroker_host::capabilities::{Grants, NoTerminal, StateStore};
use credbroker_host::config::{ClientConfig, PluginSpec};
use credbroker_host::dirs::Dirs;
use credbroker_host::exec::{self, GetRequest, Selection};
use credbroker_host::plugin::prepare::{PrepareError, Verified};
use credbroker_host::plugin::{PluginError, PluginOrigin, PluginRef};
use credbroker_host::runtime::{Allocation, Runtime, RuntimeOptions, World};
use credbroker_host::settings::ResolvedSettings;
use credbroker_host::storage::{KeyringHandle, StorageKind};
use credbroker_host::{fsutil, reachability};
use serde_yaml_ng::Value;

/// Arguments of `credbroker doctor`.
#[derive(Debug, Args)]
#[command(after_help = "Checks the configuration, the cache and plugin directories, every profile (plugin, pin, \
    signature, settings, grants, backends reachable over TCP and TLS) and the kubeconfig users that run \
    credbroker. Exits 1 when something needs fixing.")]
pub struct DoctorArgs {
    /// Check only this provider (a profile or a plugin name).
    #[arg(long)]
    provider: Option<String>,
    /// The configuration file [default: ~/.config/credbroker/config.toml].
    #[arg(long, env = "CREDBROKER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Also get a credential with each checked provider (it may prompt); the
    /// credential itself is not shown.
    #[arg(long)]
    run: bool,
    /// How long to wait for each backend.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Findings, printed as they come.
#[derive(Default)]
struct Report {
    problems: usize,
    warnings: usize,
}

impl Report {
    fn ok(&mut self, what: impl AsRef<str>) {
        println!("  ok    {}", what.as_ref());
    }

    fn warn(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.warnings += 1;
        println!("  warn  {}\n        fix: {}", what.as_ref(), fix.as_ref());
    }

    fn fail(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.problems += 1;
        println!("  FAIL  {}\n        fix: {}", what.as_ref(), fix.as_ref());
    }
}

/// Run `credbroker doctor`.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let dirs = Dirs::of_user().map_err(anyhow::Error::msg)?;
    let mut report = Report::default();

    println!("files");
    let config_path = args.config.clone().unwrap_or_else(|| dirs.config_file.clone());
    let config = match ClientConfig::load(&config_path, args.config.is_none()) {
        Ok(config) => {
            if config_path.exists() {
                report.ok(format!("{}: {} profile(s)", config_path.display(), config.profiles.len()));
            } else {
                report.ok(format!("{}: none (plugins are used by name, with --set)", config_path.display()));
            }
            config
        }
        Err(e) => {
            report.fail(e.to_string(), "correct the file (line and column above); `credbroker get` refuses it too");
            ClientConfig::default()
        }
    };
    for (dir, what) in [
        (dirs.cache.clone(), "cache"),
        (dirs.artifacts(), "compiled plugins"),
        (dirs.credentials(), "cached credentials"),
        (dirs.state.clone(), "plugin state"),
    ] {
        check_private_dir(&mut report, &dir, what);
    }
    check_plugin_dir(&mut report, &dirs.plugins);
    check_keyring(&mut report, &config);

    let runtime =
        Runtime::new(RuntimeOptions { allocation: Allocation::OnDemand, artifact_dir: Some(dirs.artifacts()) })?;
    let names: Vec<String> = match &args.provider {
        Some(name) => vec![name.clone()],
        None => config.profiles.keys().cloned().collect(),
    };
    for name in &names {
        let spec = match config.profiles.get(name) {
            Some(profile) => profile.spec(),
            None => PluginSpec { plugin: name.clone(), ..PluginSpec::default() },
        };
        println!("provider {name} (plugin {})", spec.plugin);
        check_profile(&mut report, &config, &dirs, &runtime, &spec, args.timeout);
        if args.run {
            run_provider(&mut report, name, args.config.clone());
        }
    }

    println!("kubeconfig");
    check_kubeconfig(&mut report, &config, &dirs);

    println!(
        "{} problem(s), {} warning(s){}",
        report.problems,
        report.warnings,
        if report.problems == 0 && report.warnings == 0 { ": all good" } else { "" }
    );
    Ok(if report.problems == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn check_private_dir(report: &mut Report, dir: &Path, what: &str) {
    use fsutil::{DirPrivacy, PrivateDirError};
    match fsutil::dir_privacy(dir) {
        Err(PrivateDirError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            report.ok(format!("{what}: {} (created private on first use)", dir.display()));
        }
        Err(PrivateDirError::NotADirectory(_)) => report.fail(
            format!("{what}: {} is not a directory (or is a symlink)", dir.display()),
            format!("remove it: {} {}", if cfg!(windows) { "del" } else { "rm" }, dir.display()),
        ),
        Err(e @ PrivateDirError::ForeignOwner { .. }) => report.fail(
            format!("{what}: {e}"),
            if cfg!(windows) {
                "use your own directory (CREDBROKER_CACHE_DIR), or take ownership of it".to_string()
            } else {
                format!("use your own directory (CREDBROKER_CACHE_DIR), or `sudo chown -R $(id -u) {}`", dir.display())
            },
        ),
        Err(e) => report.fail(format!("{what}: {e}"), "check the directory's permissions"),
        Ok(DirPrivacy::Open { before }) => report.fail(
            format!("{what}: {} has {before}: other users can read it", dir.display()),
            if cfg!(windows) {
                "credbroker get makes it private on its next run".to_string()
            } else {
                format!("chmod 700 {} (credbroker get also narrows it on its next run)", dir.display())
            },
        ),
        Ok(DirPrivacy::Private) => report.ok(format!("{what}: {} (private)", dir.display())),
    }
}

fn check_plugin_dir(report: &mut Report, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        report.ok(format!("installed plugins: none ({})", dir.display()));
        return;
    };
    let mut count = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        count += 1;
        if let Ok(meta) = std::fs::metadata(&path)
            && others_can_replace(&meta)
        {
            report.fail(
                format!("{}: other users can replace this plugin", path.display()),
                format!("chmod go-w {} (and check it is the plugin you installed)", path.display()),
            );
        }
    }
    report.ok(format!("installed plugins: {count} in {}", dir.display()));
}

/// Whether users other than the current one (and root) can write the file.
#[cfg(unix)]
fn others_can_replace(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.mode() & 0o022 != 0 || meta.uid() != fsutil::current_uid() && meta.uid() != 0
}

/// Installed plugins inherit the user's profile directory's access list.
#[cfg(windows)]
fn others_can_replace(_meta: &std::fs::Metadata) -> bool {
    false
}

fn check_profile(
    report: &mut Report,
    config: &ClientConfig,
    dirs: &Dirs,
    runtime: &Runtime,
    spec: &PluginSpec,
    timeout: Duration,
) {
    // The path `credbroker get` takes, step by step, each failure with its fix.
    let (plugin, trust) = match dirs.plugin_sources().trusted(spec, &config.plugins) {
        Ok(trusted) => trusted,
        Err(e) => {
            let fix = match &e {
                PrepareError::Plugin(PluginError::DigestMismatch { .. }) => {
                    "install the pinned build, or update the pin if the change is intended"
                }
                PrepareError::Plugin(_) | PrepareError::Reference(_) => {
                    "install it (`credbroker plugin install`) or fix the name in the profile"
                }
                PrepareError::Registry { .. } => {
                    "check the reference, the registry's credentials (docker login) and [plugins.registries]"
                }
                PrepareError::Store(_) => "pull it again: credbroker plugin pull REFERENCE",
                PrepareError::Signature(_) => "get a signed build, or sign it: credbroker plugin sign",
                // Not steps 1–3: reported below.
                PrepareError::Settings(_) | PrepareError::Grant(_) | PrepareError::Load(_) => "",
            };
            report.fail(e.to_string(), fix);
            return;
        }
    };
    if spec.sha256.is_some() {
        report.ok("sha256 matches the pin");
    }
    if let credbroker_host::signing::Trust::SignedBy(key) = &trust {
        report.ok(format!("signed by trusted key {key}"));
    }
    if let PluginOrigin::Oci { record, .. } = &plugin.origin {
        report.ok(format!("{} is in the plugin store ({})", plugin.name, record.manifest_digest));
    }
    // A broken setting is reported, and the rest still checked.
    let settings = match ResolvedSettings::resolve(&spec.settings) {
        Ok(settings) => {
            report.ok(format!("{} setting(s) resolve", settings.iter().count()));
            settings
        }
        Err(e) => {
            report.fail(e.to_string(), "set the variable or create the file, or change the setting");
            ResolvedSettings::default()
        }
    };
    let verified = Verified::new(plugin, trust, settings, spec);
    let plugin = &verified.plugin;
    let started = Instant::now();
    match verified.load(runtime, &[World::Provider]) {
        Ok(_) => report.ok(format!(
            "loads as a provider (sha256 {}…, {} ms)",
            &plugin.sha256[..12],
            started.elapsed().as_millis()
        )),
        Err(e) => {
            report.fail(e.to_string(), "use a provider plugin built for this credbroker (`credbroker plugin inspect`)")
        }
    }
    if let Err(e) = verified.sandbox(Arc::new(NoTerminal), StateStore::memory()) {
        report.fail(e.to_string(), "correct the grant in the profile's [grants]");
        return;
    }
    check_backends(report, &spec.grants, timeout);
}

fn check_backends(report: &mut Report, grants: &Grants, timeout: Duration) {
    let ca_file: Option<std::path::PathBuf> = grants.get("ca-file");
    if let Some(ca) = &ca_file
        && let Err(e) = credbroker_host::capabilities::tls::client_config(Some(ca))
    {
        report.fail(format!("ca-file: {e}"), "point ca-file at a PEM bundle of CA certificates");
        return;
    }
    let origins: Vec<String> = grants.get("http").unwrap_or_default();
    let servers: Vec<String> = grants.get("ldap").unwrap_or_default();
    for origin in origins.iter().chain(&servers) {
        if origin.contains('*') {
            report.ok(format!("{origin}: a wildcard grant (not probed)"));
            continue;
        }
        match reachability::check(origin, ca_file.as_deref(), timeout) {
            Ok(reached) => report.ok(format!(
                "{origin} reachable ({}{}, {} ms)",
                reached.address,
                if reached.tls { ", TLS verified" } else { "" },
                reached.elapsed.as_millis()
            )),
            Err(e) if e.starts_with("TLS") => report.fail(
                format!("{origin}: {e}"),
                "grant the CA that signed the server's certificate with `ca-file`, or fix the host name",
            ),
            Err(e) => report.fail(
                format!("{origin}: {e}"),
                "check the address, the network (VPN, proxy, firewall) and that the service is up",
            ),
        }
    }
}

/// Whether the OS keyring answers, and what that means for the profiles' `storage`.
fn check_keyring(report: &mut Report, config: &ClientConfig) {
    let wants_keyring: Vec<&str> = config
        .profiles
        .iter()
        .filter(|(_, p)| p.storage == Some(StorageKind::Keyring))
        .map(|(name, _)| name.as_str())
        .collect();
    match KeyringHandle::connect(None) {
        Ok(_) => report.ok("OS keyring: answers (storage = auto keeps secrets there)"),
        // Usual in containers and over SSH, and auto then keeps files: not a problem.
        Err(e) if wants_keyring.is_empty() => {
            report.ok(format!("OS keyring: {e}; storage = auto keeps secrets in private files"))
        }
        Err(e) => report.fail(
            format!("OS keyring: {e}; profiles with storage = \"keyring\": {}", wants_keyring.join(", ")),
            "start or unlock the keyring (or set storage = \"file\" in those profiles)",
        ),
    }
}

fn run_provider(report: &mut Report, name: &str, config: Option<PathBuf>) {
    let request = GetRequest {
        selection: Selection::Provider(name.to_string()),
        set: Vec::new(),
        config,
        api_version: None,
        exec_info: None,
        no_cache: true,
        storage: None,
        allow_http: Vec::new(),
        allow_file: Vec::new(),
        stdin_is_terminal: std::io::IsTerminal::is_terminal(&std::io::stdin()),
    };
    let started = Instant::now();
    match exec::get(&request) {
        Ok(credential) => {
            let status = credential.status.unwrap_or_default();
            let kind = if status.token.is_some() { "a token" } else { "a client certificate" };
            let expiry = status.expiration_timestamp.map(|t| format!(", valid until {t}")).unwrap_or_default();
            report.ok(format!("got {kind}{expiry} in {} ms", started.elapsed().as_millis()));
        }
        Err(e) => report
            .fail(format!("getting a credential failed: {e}"), "see the message; run with -v for the plugin's log"),
    }
}

/// The kubeconfig users that run credbroker, and whether their provider exists.
fn check_kubeconfig(report: &mut Report, config: &ClientConfig, dirs: &Dirs) {
    let files: Vec<PathBuf> = match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(list) => std::env::split_paths(&list).collect(),
        None => directories::BaseDirs::new().map(|b| vec![b.home_dir().join(".kube/config")]).unwrap_or_default(),
    };
    let mut found = 0;
    for file in files {
        let text = match fsutil::read_text_bounded(&file, fsutil::bounds::KUBECONFIG) {
            Ok(text) => text,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                report.fail(e.to_string(), "point KUBECONFIG at regular kubeconfig files");
                continue;
            }
        };
        let Ok(kubeconfig) = serde_yaml_ng::from_str::<Value>(&text) else {
            report.fail(
                format!("{}: not valid YAML", file.display()),
                "fix or remove the file; kubectl cannot read it either",
            );
            continue;
        };
        let users = kubeconfig.get("users").and_then(Value::as_sequence).cloned().unwrap_or_default();
        for user in users {
            let exec = &user["user"]["exec"];
            let command = exec["command"].as_str().unwrap_or_default();
            if !command.ends_with("credbroker") {
                continue;
            }
            found += 1;
            let name = user["name"].as_str().unwrap_or("?");
            let args: Vec<&str> =
                exec["args"].as_sequence().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let provider = args.iter().position(|a| *a == "--provider").and_then(|i| args.get(i + 1)).copied();
            let Some(provider) = provider else {
                report.ok(format!("{}: user {name} runs credbroker", file.display()));
                continue;
            };
            let known = config.profiles.contains_key(provider)
                || PluginRef::locate(provider, std::slice::from_ref(&dirs.plugins)).is_ok();
            if known {
                report.ok(format!("{}: user {name} runs provider {provider}", file.display()));
            } else {
                report.fail(
                    format!("{}: user {name} runs provider {provider}, which does not exist", file.display()),
                    format!("add a profile `{provider}` to the configuration, or rerun `credbroker kubeconfig --provider NAME --user {name}`"),
                );
            }
            if command.contains('/') && !Path::new(command).exists() {
                report.fail(
                    format!("{}: user {name} runs {command}, which does not exist", file.display()),
                    "rerun `credbroker kubeconfig`, or put credbroker on PATH",
                );
            }
        }
    }
    if found == 0 {
        report.warn(
            "no kubeconfig user runs credbroker",
            "credbroker kubeconfig --provider NAME [--context C --cluster K]",
        );
    }
}
