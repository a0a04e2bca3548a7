//! `credbroker kubeconfig`: add or update the kubeconfig user (and context)
//! that runs `credbroker get`, as kubelogin's `setup` and
//! aws-iam-authenticator's `init` do for theirs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use credbroker_host::config::ClientConfig;
use credbroker_host::dirs::Dirs;
use credbroker_host::fsutil;
use credbroker_host::plugin::PluginRef;
use credbroker_host::runtime::World;
use credbroker_host::settings::parse_key_value;
use serde_yaml_ng::{Mapping, Value};

/// Arguments of `credbroker kubeconfig`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    credbroker kubeconfig --provider corp-ldap --context prod --cluster prod --use-context\n  \
    credbroker kubeconfig --provider oidc --set issuer=https://idp.example --dry-run\n\n\
    Unrelated users, clusters and contexts are left as they are (comments are not kept, as with kubectl).")]
pub struct KubeconfigArgs {
    /// The provider `credbroker get` runs: a profile of the config file, or a plugin.
    #[arg(long)]
    provider: String,
    /// The kubeconfig user to add or update [default: credbroker-PROVIDER].
    #[arg(long)]
    user: Option<String>,
    /// Also add or update this context, binding the user to a cluster.
    #[arg(long)]
    context: Option<String>,
    /// The kubeconfig cluster of --context [default: the context's current cluster].
    #[arg(long, requires = "context")]
    cluster: Option<String>,
    /// The default namespace of --context.
    #[arg(long, requires = "context")]
    namespace: Option<String>,
    /// Make --context the current context.
    #[arg(long, requires = "context")]
    use_context: bool,
    /// The kubeconfig to edit [default: the file of $KUBECONFIG holding the user, else its first, else ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Write the result to this file instead, leaving the kubeconfig as it is.
    #[arg(long, value_name = "FILE", conflicts_with = "dry_run")]
    output: Option<PathBuf>,
    /// Print the resulting kubeconfig on stdout and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// credbroker's configuration file, passed on to `credbroker get --config`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A plugin setting passed on as `--set`; repeatable. Prefer env:NAME or file:PATH for secrets.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The ExecCredential version kubectl asks for.
    #[arg(long, value_enum, default_value_t = ExecVersion::V1)]
    api_version: ExecVersion,
    /// When kubectl lets the provider prompt the user.
    #[arg(long, value_enum, default_value_t = InteractiveMode::IfAvailable)]
    interactive_mode: InteractiveMode,
    /// The command kubectl runs [default: `credbroker` when PATH finds this binary, else its absolute path].
    #[arg(long)]
    command: Option<String>,
}

/// `client.authentication.k8s.io` versions.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExecVersion {
    V1,
    V1beta1,
}

/// The exec entry's `interactiveMode`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum InteractiveMode {
    #[value(name = "IfAvailable")]
    IfAvailable,
    #[value(name = "Never")]
    Never,
    #[value(name = "Always")]
    Always,
}

impl InteractiveMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::IfAvailable => "IfAvailable",
            Self::Never => "Never",
            Self::Always => "Always",
        }
    }
}

/// Fields of a kubeconfig user that authenticate some other way.
const OTHER_AUTH: &[&str] = &[
    "token",
    "tokenFile",
    "username",
    "password",
    "auth-provider",
    "client-certificate",
    "client-certificate-data",
    "client-key",
    "client-key-data",
];

/// Run `credbroker kubeconfig`.
pub fn run(args: KubeconfigArgs) -> anyhow::Result<ExitCode> {
    check_provider(&args)?;
    for (key, value) in args.set.iter().map(|s| parse_key_value(s)).collect::<Result<Vec<_>, _>>().context("--set")? {
        let secretish = ["token", "password", "secret", "key"].iter().any(|w| key.to_ascii_lowercase().contains(w));
        if secretish && !value.starts_with("env:") && !value.starts_with("file:") {
            eprintln!(
                "warning: --set {key}=… puts the value in the kubeconfig in clear; prefer {key}=env:NAME or {key}=file:PATH"
            );
        }
    }
    let user_name = args.user.clone().unwrap_or_else(|| format!("credbroker-{}", args.provider));
    let path = match &args.kubeconfig {
        Some(path) => path.clone(),
        None => default_kubeconfig(&user_name)?,
    };
    let original = match fsutil::read_text_bounded(&path, fsutil::bounds::KUBECONFIG) {
        Ok(text) => Some(text),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(anyhow::anyhow!("{e}; nothing was changed")),
    };
    let mut config = match original.as_deref().map(str::trim) {
        None | Some("") => empty_config(),
        Some(text) => serde_yaml_ng::from_str::<Value>(text)
            .map_err(|e| anyhow::anyhow!("{} is not a kubeconfig: {e}; nothing was changed", path.display()))?,
    };
    let Some(top) = config.as_mapping_mut() else {
        bail!("{} is not a kubeconfig (not a YAML mapping); nothing was changed", path.display());
    };
    if let Some(kind) = top.get("kind").and_then(Value::as_str)
        && kind != "Config"
    {
        bail!("{} has kind `{kind}`, not a kubeconfig (kind: Config); nothing was changed", path.display());
    }

    let mut changes = Vec::new();
    let exec = exec_entry(&args)?;
    let command_line = exec_command_line(&exec);
    let (outcome, removed) = upsert_user(top, &user_name, exec)?;
    let mut line = format!("user \"{user_name}\": {outcome} (runs: {command_line})");
    if !removed.is_empty() {
        line.push_str(&format!("; removed its other credentials: {}", removed.join(", ")));
    }
    changes.push(line);
    if let Some(context) = &args.context {
        changes.push(upsert_context(top, context, &args, &user_name)?);
        if args.use_context {
            let old = top.get("current-context").and_then(Value::as_str).unwrap_or_default().to_string();
            if old != *context {
                top.insert("current-context".into(), Value::String(context.clone()));
                changes.push(format!("current-context: \"{old}\" -> \"{context}\""));
            }
        }
    }

    let text = serde_yaml_ng::to_string(&config).context("encoding the kubeconfig")?;
    if args.dry_run {
        print!("{text}");
        eprintln!("{} (dry run, nothing written):", path.display());
    } else {
        let target = args.output.clone().unwrap_or_else(|| path.clone());
        let unchanged_in_place = args.output.is_none()
            && original.as_deref().and_then(|o| serde_yaml_ng::from_str::<Value>(o).ok()) == Some(config.clone());
        if unchanged_in_place {
            eprintln!("{}: already up to date", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        write_kubeconfig(&target, &path, text.as_bytes())?;
        eprintln!("{}:", target.display());
    }
    for change in changes {
        eprintln!("  {change}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The provider must exist now, or kubectl would fail on every command later.
fn check_provider(args: &KubeconfigArgs) -> anyhow::Result<()> {
    let dirs = Dirs::of_user().map_err(anyhow::Error::msg)?;
    let config = match &args.config {
        Some(path) => ClientConfig::load(path, false)?,
        None => ClientConfig::load(&dirs.config_file, true)?,
    };
    if config.profiles.contains_key(&args.provider) {
        return Ok(());
    }
    let plugin_dirs = [dirs.plugins.clone()];
    if let Ok(plugin) = PluginRef::locate(&args.provider, &plugin_dirs)
        && credbroker_host::catalog::PluginInfo::of(&plugin, &plugin_dirs)
            .map(|info| info.worlds().contains(&World::Provider))
            .unwrap_or(false)
    {
        return Ok(());
    }
    let profiles: Vec<String> = config.profiles.keys().cloned().collect();
    let plugins = credbroker_host::plugin::available(&plugin_dirs, Some(World::Provider));
    bail!(
        "unknown provider `{}`; profiles: {}; provider plugins: {}",
        args.provider,
        if profiles.is_empty() { "none".into() } else { profiles.join(", ") },
        plugins.join(", ")
    )
}

/// `$KUBECONFIG`'s file that already has `user`, else its first file, else ~/.kube/config.
fn default_kubeconfig(user: &str) -> anyhow::Result<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let files: Vec<PathBuf> = std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()).collect();
        let has_user = |path: &PathBuf| {
            fsutil::read_text_bounded(path, fsutil::bounds::KUBECONFIG)
                .ok()
                .and_then(|t| serde_yaml_ng::from_str::<Value>(&t).ok())
                .and_then(|v| v.get("users").and_then(Value::as_sequence).cloned())
                .is_some_and(|users| users.iter().any(|u| u.get("name").and_then(Value::as_str) == Some(user)))
        };
        if let Some(file) = files.iter().find(|f| has_user(f)).or(files.first()) {
            return Ok(file.clone());
        }
    }
    let home = directories::BaseDirs::new().context("cannot determine the home directory (is HOME set?)")?;
    Ok(home.home_dir().join(".kube/config"))
}

fn empty_config() -> Value {
    let mut top = Mapping::new();
    top.insert("apiVersion".into(), "v1".into());
    top.insert("kind".into(), "Config".into());
    top.insert("clusters".into(), Value::Sequence(Vec::new()));
    top.insert("contexts".into(), Value::Sequence(Vec::new()));
    top.insert("users".into(), Value::Sequence(Vec::new()));
    Value::Mapping(top)
}

/// The command kubectl runs: `credbroker` when PATH finds this very binary.
fn command(args: &KubeconfigArgs) -> anyhow::Result<String> {
    if let Some(command) = &args.command {
        return Ok(command.clone());
    }
    let me = std::env::current_exe().context("locating this binary")?;
    let me = me.canonicalize().unwrap_or(me);
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join("credbroker")).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|candidate| candidate.is_file());
    if on_path.and_then(|p| p.canonicalize().ok()).as_ref() == Some(&me) {
        Ok("credbroker".into())
    } else {
        Ok(me.display().to_string())
    }
}

fn exec_entry(args: &KubeconfigArgs) -> anyhow::Result<Value> {
    let mut argv = vec!["get".to_string(), "--provider".into(), args.provider.clone()];
    if let Some(config) = &args.config {
        let config = std::path::absolute(config).with_context(|| format!("resolving {}", config.display()))?;
        argv.extend(["--config".into(), config.display().to_string()]);
    }
    for set in &args.set {
        argv.extend(["--set".into(), set.clone()]);
    }
    let mut exec = Mapping::new();
    let version = match args.api_version {
        ExecVersion::V1 => "client.authentication.k8s.io/v1",
        ExecVersion::V1beta1 => "client.authentication.k8s.io/v1beta1",
    };
    exec.insert("apiVersion".into(), version.into());
    exec.insert("command".into(), command(args)?.into());
    exec.insert("args".into(), Value::Sequence(argv.into_iter().map(Value::String).collect()));
    exec.insert("interactiveMode".into(), args.interactive_mode.as_str().into());
    exec.insert("provideClusterInfo".into(), true.into());
    Ok(Value::Mapping(exec))
}

fn exec_command_line(exec: &Value) -> String {
    let mut words = vec![exec.get("command").and_then(Value::as_str).unwrap_or_default().to_string()];
    if let Some(args) = exec.get("args").and_then(Value::as_sequence) {
        words.extend(args.iter().filter_map(Value::as_str).map(str::to_string));
    }
    words.join(" ")
}

/// The named entries under `key` (`users`, `contexts`, `clusters`).
fn entries<'a>(top: &'a mut Mapping, key: &str) -> anyhow::Result<&'a mut Vec<Value>> {
    let slot = top.entry(key.into()).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Sequence(Vec::new());
    }
    slot.as_sequence_mut().with_context(|| format!("`{key}` in the kubeconfig is not a list; nothing was changed"))
}

fn find<'a>(list: &'a mut [Value], name: &str) -> Option<&'a mut Mapping> {
    list.iter_mut().filter_map(Value::as_mapping_mut).find(|e| e.get("name").and_then(Value::as_str) == Some(name))
}

/// The mapping under `key`, made one if it is missing or something else.
fn mapping_at<'a>(map: &'a mut Mapping, key: &str) -> &'a mut Mapping {
    let slot = map.entry(key.into()).or_insert(Value::Null);
    if !slot.is_mapping() {
        *slot = Value::Mapping(Mapping::new());
    }
    match slot {
        Value::Mapping(mapping) => mapping,
        _ => unreachable!("replaced by a mapping above"),
    }
}

fn named(name: &str, field: &str, body: Mapping) -> Value {
    let mut entry = Mapping::new();
    entry.insert("name".into(), name.into());
    entry.insert(field.into(), Value::Mapping(body));
    Value::Mapping(entry)
}

/// Put `exec` on user `name`; what happened and which other credentials went.
fn upsert_user(top: &mut Mapping, name: &str, exec: Value) -> anyhow::Result<(&'static str, Vec<String>)> {
    let users = entries(top, "users")?;
    let Some(entry) = find(users, name) else {
        let mut user = Mapping::new();
        user.insert("exec".into(), exec);
        users.push(named(name, "user", user));
        return Ok(("added", Vec::new()));
    };
    let user = mapping_at(entry, "user");
    let removed: Vec<String> =
        OTHER_AUTH.iter().filter(|f| user.remove(**f).is_some()).map(|f| (*f).to_string()).collect();
    if user.get("exec") == Some(&exec) && removed.is_empty() {
        return Ok(("unchanged", removed));
    }
    user.insert("exec".into(), exec);
    Ok(("updated", removed))
}

fn upsert_context(top: &mut Mapping, name: &str, args: &KubeconfigArgs, user: &str) -> anyhow::Result<String> {
    let clusters: Vec<String> = entries(top, "clusters")?
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let contexts = entries(top, "contexts")?;
    let existing_cluster = find(contexts, name)
        .and_then(|c| c.get("context"))
        .and_then(|c| c.get("cluster"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(cluster) = args.cluster.clone().or(existing_cluster) else {
        bail!(
            "context `{name}` is new: name its cluster with --cluster (clusters in the kubeconfig: {})",
            if clusters.is_empty() { "none".into() } else { clusters.join(", ") }
        );
    };
    if !clusters.contains(&cluster) {
        bail!(
            "the kubeconfig has no cluster `{cluster}` (it has: {}); add it with `kubectl config set-cluster`",
            if clusters.is_empty() { "none".into() } else { clusters.join(", ") }
        );
    }
    let mut body = Mapping::new();
    body.insert("cluster".into(), cluster.clone().into());
    body.insert("user".into(), user.into());
    let outcome = match find(contexts, name) {
        Some(entry) => {
            let context = mapping_at(entry, "context");
            let before = context.clone();
            context.insert("cluster".into(), cluster.clone().into());
            context.insert("user".into(), user.into());
            if let Some(namespace) = &args.namespace {
                context.insert("namespace".into(), namespace.clone().into());
            }
            if *context == before { "unchanged" } else { "updated" }
        }
        None => {
            if let Some(namespace) = &args.namespace {
                body.insert("namespace".into(), namespace.clone().into());
            }
            contexts.push(named(name, "context", body));
            "added"
        }
    };
    Ok(format!("context \"{name}\": {outcome} (cluster \"{cluster}\", user \"{user}\")"))
}

/// Replace `target` atomically, keeping the mode of `original` (the kubeconfig
/// being edited), or 0600 for a new file; a symlinked kubeconfig is written
/// through, not replaced.
fn write_kubeconfig(target: &Path, original: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let target = match std::fs::canonicalize(target) {
        Ok(resolved) => resolved,
        Err(_) => target.to_path_buf(),
    };
    let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = tempfile::Builder::new()
        .prefix(".kubeconfig.")
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", target.display()))?;
    // The mode of the kubeconfig being edited, or 0600 for a new one. (On
    // Windows the file has its directory's access list, as `%USERPROFILE%\.kube`'s.)
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(original).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o600);
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", target.display()))?;
    }
    #[cfg(not(unix))]
    let _ = original;
    file.as_file().sync_all().with_context(|| format!("writing {}", target.display()))?;
    file.persist(&target).map_err(|e| e.error).with_context(|| format!("replacing {}", target.display()))?;
    Ok(())
}
