//! `credbroker plugin`: write, list, inspect, install, sign and verify
//! plugins; push them to and pull them from OCI registries.

mod template;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use credbroker_host::catalog::{self, PluginInfo, Source};
use credbroker_host::config::ClientConfig;
use credbroker_host::contract::{self, Compatibility};
use credbroker_host::dirs::Dirs;
use credbroker_host::plugin::prepare::{PluginSources, PrepareError};
use credbroker_host::plugin::reference::{OciReference, is_oci};
use credbroker_host::plugin::{PluginOrigin, PluginRef, cosign, registry};
use credbroker_host::signing::{self, Trust, TrustPolicy};
use credbroker_host::{fsutil, keys};
use serde_json::json;

/// Plugin subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Write a new plugin project (Rust or Python) that builds and tests as written.
    New(NewArgs),
    /// List bundled, installed and pulled (OCI) plugins with their worlds and digests.
    List(ListArgs),
    /// Show what a plugin implements and which capabilities it will ask for.
    Inspect(InspectArgs),
    /// Copy a plugin into the user plugin directory, after checking it.
    Install(InstallArgs),
    /// Check a plugin's sha256 pin and its signature by a trusted key.
    Verify(VerifyArgs),
    /// Sign a plugin file (writes PLUGIN.wasm.sig) or an OCI artifact (pushes a cosign signature).
    Sign(SignArgs),
    /// Create a key pair for signing plugins (Ed25519, or ECDSA P-256 as cosign makes).
    Keygen(KeygenArgs),
    /// Publish a plugin file as an OCI artifact (the CNCF wasm layout).
    Push(PushArgs),
    /// Fetch an OCI plugin into the plugin store, verified (again, if it is there).
    Pull(PullArgs),
    /// Re-resolve the tags of OCI plugins in the store (one, or all); a new digest is pulled and verified.
    Update(UpdateArgs),
}

/// The `[plugins]` policy an OCI command works under.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The configuration whose `[plugins]` policy applies (registries, keys) [default: ~/.config/credbroker/config.toml].
    #[arg(long, env = "CREDBROKER_CONFIG", value_name = "FILE", conflicts_with = "serve_config")]
    config: Option<PathBuf>,
    /// Use the `[plugins]` policy of this `credbroker serve` configuration instead.
    #[arg(long, value_name = "FILE")]
    serve_config: Option<PathBuf>,
}

/// Arguments of `plugin push`.
#[derive(Debug, Args)]
#[command(after_help = "Registry credentials come from docker's config.json ($DOCKER_CONFIG or ~/.docker: \
    `docker login` writes them); a CA file or plain HTTP (loopback registries only) are set in \
    [plugins.registries.\"HOST[:PORT]\"]. The digest printed is what a profile may pin: \
    plugin = \"oci://REGISTRY/REPOSITORY@sha256:…\".")]
pub struct PushArgs {
    /// The component file.
    path: PathBuf,
    /// Where: oci://REGISTRY/REPOSITORY:TAG.
    reference: String,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// Arguments of `plugin pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:DIGEST.
    reference: String,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// Arguments of `plugin update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The reference to re-resolve [default: every tag in the plugin store].
    reference: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// Arguments of `plugin new`.
#[derive(Debug, Args)]
#[command(after_help = "The project's README says how to build it, test it, run it through credbroker \
    and publish it. A Rust crate depends on credbroker-sdk from crates.io; --sdk PATH builds it against \
    a local copy instead (a credbroker checkout's guest-sdk/, or an unpacked credbroker-sdk .crate).")]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and `-` (its crate and file name).
    name: String,
    /// What it is: a provider (credbroker get), a validator or a login backend (credbroker serve).
    #[arg(long, value_enum, default_value_t = template::Kind::Provider)]
    world: template::Kind,
    /// The language of the project.
    #[arg(long, value_enum, default_value_t = template::Lang::Rust)]
    lang: template::Lang,
    /// Where to write it [default: ./NAME].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Write into DIR even when it is not empty (files of the same names are replaced).
    #[arg(long)]
    force: bool,
    /// Build against the credbroker-sdk in this directory (Rust only).
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

/// Arguments of `plugin list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `plugin inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A bundled or installed plugin name, a path to a `.wasm`, or an OCI reference (from the store; pulled if absent).
    plugin: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `plugin install`.
#[derive(Debug, Args)]
#[command(after_help = "The plugin is installed as NAME.wasm in the user plugin directory \
    (~/.local/share/credbroker/plugins), where `--provider NAME` and `plugin = \"NAME\"` find it; \
    a NAME.wasm.sig beside the file is installed too.")]
pub struct InstallArgs {
    /// The component file.
    path: PathBuf,
    /// Install under this name [default: the file name without `.wasm`].
    #[arg(long)]
    name: Option<String>,
    /// Refuse unless the file's sha256 is this.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// Replace a different plugin installed under the same name.
    #[arg(long)]
    force: bool,
    /// The configuration whose `[plugins]` policy applies [default: ~/.config/credbroker/config.toml].
    #[arg(long, env = "CREDBROKER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Arguments of `plugin verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A bundled or installed plugin name, a path to a `.wasm`, or an OCI reference (checked in the store; pulled if absent).
    plugin: String,
    /// Its sha256 must be this.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// Also trust this public key (SPKI PEM); repeatable.
    #[arg(long = "key", value_name = "FILE")]
    keys: Vec<PathBuf>,
    /// The configuration whose `[plugins] trusted-keys` apply [default: ~/.config/credbroker/config.toml].
    #[arg(long, env = "CREDBROKER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Arguments of `plugin sign`.
#[derive(Debug, Args)]
#[command(after_help = "An OCI artifact is signed the way cosign signs: a simple-signing payload naming \
    the manifest digest, pushed under the tag sha256-HEX.sig of the same repository \
    (`cosign verify --key KEY.pub --insecure-ignore-tlog=true REGISTRY/REPOSITORY@sha256:…` accepts it). \
    Stores that pulled it before get the signature with `credbroker plugin update`.")]
pub struct SignArgs {
    /// The component file, or an OCI reference (oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST).
    path: String,
    /// The private key (PKCS#8 PEM, from `plugin keygen`): Ed25519 for files; Ed25519 or ECDSA P-256 for OCI.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// The kind of key `plugin keygen` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyKindArg {
    /// Ed25519: signs plugin files and OCI artifacts.
    Ed25519,
    /// ECDSA P-256 (cosign's default kind): signs OCI artifacts.
    EcdsaP256,
}

/// Arguments of `plugin keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write OUT.pem (private, 0600) and OUT.pub (public: what operators trust).
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// The kind of key.
    #[arg(long, value_enum, default_value_t = KeyKindArg::Ed25519)]
    kind: KeyKindArg,
}

/// Run a plugin subcommand.
pub fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    let dirs = Dirs::of_user().map_err(anyhow::Error::msg)?;
    let plugin_dirs = vec![dirs.plugins.clone()];
    match command {
        PluginCommand::New(args) => new(&args),
        PluginCommand::List(args) => list(&plugin_dirs, &dirs, args.json),
        PluginCommand::Inspect(args) => inspect(&args, &dirs, &plugin_dirs),
        PluginCommand::Install(args) => install(&args, &dirs),
        PluginCommand::Verify(args) => verify(&args, &dirs, &plugin_dirs),
        PluginCommand::Sign(args) => sign(&args, &dirs),
        PluginCommand::Keygen(args) => keygen(&args),
        PluginCommand::Push(args) => push(&args, &dirs),
        PluginCommand::Pull(args) => pull(&args, &dirs),
        PluginCommand::Update(args) => update(&args, &dirs),
    }
}

fn new(args: &NewArgs) -> anyhow::Result<ExitCode> {
    template::check_name(&args.name)?;
    let sdk = match (&args.sdk, args.lang) {
        (Some(_), template::Lang::Python) => {
            bail!("--sdk is for Rust plugins; a Python project builds against the contract in its wit/")
        }
        (Some(dir), template::Lang::Rust) => Some(template::LocalSdk::at(dir)?),
        (None, _) => None,
    };
    let spec = template::Spec { name: &args.name, kind: args.world, lang: args.lang, sdk: sdk.as_ref() };
    let files = template::render(&spec);
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    write_project(&dir, &files, args.force)?;
    let (test, build) = match args.lang {
        template::Lang::Rust => ("cargo test", "cargo build --release --target wasm32-wasip2"),
        template::Lang::Python => ("python3 -m unittest", "./build   (componentize-py: see README.md)"),
    };
    eprintln!(
        "created the {} {} `{}` in {}\n  cd {}\n  {test}\n  {build}\n\
         then README.md says how to run {} through credbroker and publish it",
        args.lang,
        args.world.describe(),
        args.name,
        dir.display(),
        dir.display(),
        spec.wasm(),
    );
    if args.lang == template::Lang::Rust && sdk.is_none() {
        eprintln!(
            "note: it depends on credbroker-sdk {} from crates.io; to build against a local copy (a credbroker \
             checkout's guest-sdk/, or an unpacked .crate), run again with --sdk PATH",
            template::SDK_VERSION
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Write `files` into `dir`, all or nothing: they are written into a fresh
/// directory beside it first, which then becomes `dir` (or, with `force` and
/// a `dir` that has files, whose files are moved into it).
fn write_project(dir: &Path, files: &[template::File], force: bool) -> anyhow::Result<()> {
    let occupied = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) if dir.exists() && !dir.is_dir() => bail!("{} exists and is not a directory", dir.display()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    if occupied && !force {
        bail!(
            "{} exists and is not empty; choose another --dir, or pass --force to write the plugin's files into it",
            dir.display()
        );
    }
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!("{} does not exist; create it first, or choose another --dir", parent.display());
    }
    let staging = tempfile::Builder::new()
        .prefix(".credbroker-new-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    for file in files {
        let path = staging.path().join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &file.content).with_context(|| format!("writing {}", path.display()))?;
        // Windows has no executable bit: scripts run through their interpreter.
        #[cfg(unix)]
        if file.executable {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", path.display()))?;
        }
    }
    if !occupied {
        // An empty directory gives way to the complete one.
        if dir.exists() {
            std::fs::remove_dir(dir).with_context(|| format!("replacing the empty {}", dir.display()))?;
        }
        std::fs::rename(staging.path(), dir).with_context(|| format!("creating {}", dir.display()))?;
        let _ = staging.keep();
        return Ok(());
    }
    // Check every place first, so that nothing is moved when one is taken.
    for file in files {
        let target = dir.join(&file.path);
        if target.is_dir() {
            bail!("{} is a directory; the plugin needs a file there", target.display());
        }
        let mut within = target.parent();
        while let Some(ancestor) = within.filter(|a| *a != dir) {
            if ancestor.exists() && !ancestor.is_dir() {
                bail!("{} is not a directory; the plugin needs one there", ancestor.display());
            }
            within = ancestor.parent();
        }
    }
    for file in files {
        let target = dir.join(&file.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::rename(staging.path().join(&file.path), &target)
            .with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

fn worlds(info: &PluginInfo) -> String {
    let worlds: Vec<String> = info.worlds().iter().map(ToString::to_string).collect();
    if worlds.is_empty() { "-".into() } else { worlds.join(",") }
}

fn source(info: &PluginInfo) -> String {
    match &info.source {
        Source::Bundled => "bundled".into(),
        Source::Installed(path) | Source::File(path) => path.display().to_string(),
        Source::Oci(reference) => reference.clone(),
    }
}

fn list(plugin_dirs: &[PathBuf], dirs: &Dirs, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut all = catalog::list(plugin_dirs);
    all.extend(catalog::list_stored(&sources(dirs).store));
    if as_json {
        let items: Vec<_> = all.iter().map(describe_json).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = all.iter().map(|p| p.name.len()).max().unwrap_or(4).max(4);
    let world_width = all.iter().map(|p| worlds(p).len()).max().unwrap_or(6).max(6);
    println!("{:width$}  {:world_width$}  {:8}  {:64}  SOURCE", "NAME", "WORLDS", "CONTRACT", "SHA256");
    for info in &all {
        let contract = info.contract().first().map(|(v, _)| v.clone()).unwrap_or_else(|| "-".into());
        println!(
            "{:width$}  {:world_width$}  {contract:8}  {}  {}",
            info.name,
            worlds(info),
            info.sha256,
            source(info)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn compatibility_note(compatibility: Compatibility) -> &'static str {
    match compatibility {
        Compatibility::Same => "this credbroker's version",
        Compatibility::Older => "older than this credbroker's, compatible: it runs",
        Compatibility::Newer => "NEWER than this credbroker's: upgrade credbroker to run it",
        Compatibility::Incompatible => "INCOMPATIBLE with this credbroker: rebuild it against this contract",
    }
}

fn describe_json(info: &PluginInfo) -> serde_json::Value {
    json!({
        "name": info.name,
        "source": match &info.source { Source::Bundled => "bundled", Source::Installed(_) => "installed", Source::File(_) => "file", Source::Oci(_) => "oci" },
        "path": match &info.source { Source::Bundled => None, Source::Installed(p) | Source::File(p) => Some(p.display().to_string()), Source::Oci(r) => Some(r.clone()) },
        "sha256": info.sha256,
        "size": info.size,
        "worlds": info.worlds().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "contract": info.contract().iter().map(|(v, _)| v.clone()).collect::<Vec<_>>(),
        "capabilities": info.capabilities().iter().map(|c| c.interface).collect::<Vec<_>>(),
        "wasiImports": info.wasi_imports(),
        "error": info.shape.as_ref().err().map(ToString::to_string),
    })
}

fn inspect(args: &InspectArgs, dirs: &Dirs, plugin_dirs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let plugin = if is_oci(&args.plugin) {
        // From the store (pulled first, under the configuration's policy, if it is not there).
        let policy = client_config(None, dirs)?.plugins;
        sources(dirs).locate(&args.plugin, &policy)?
    } else {
        PluginRef::locate(&args.plugin, plugin_dirs)?
    };
    let info = PluginInfo::of(&plugin, plugin_dirs).with_context(|| format!("reading {}", args.plugin))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&describe_json(&info))?);
        return Ok(if info.shape.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    println!("name:      {}", info.name);
    println!("source:    {}", source(&info));
    println!("sha256:    {}", info.sha256);
    println!("size:      {} bytes ({:.1} KiB)", info.size, info.size as f64 / 1024.0);
    let shape = match &info.shape {
        Ok(shape) => shape,
        Err(e) => {
            println!("error:     {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for (version, compatibility) in info.contract() {
        println!("contract:  credbroker:plugin@{version} ({})", compatibility_note(compatibility));
    }
    if info.contract().is_empty() {
        println!("contract:  none (it neither imports nor exports credbroker:plugin interfaces)");
    }
    let status = shape.check_any(&[
        credbroker_host::runtime::World::Provider,
        credbroker_host::runtime::World::Validator,
        credbroker_host::runtime::World::Login,
    ]);
    match &status {
        Ok(worlds) => println!(
            "worlds:    {} (runs in {})",
            worlds.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            worlds
                .iter()
                .map(|w| match w {
                    credbroker_host::runtime::World::Provider => "credbroker get",
                    _ => "credbroker serve",
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        Err(why) => println!("worlds:    none usable: {why}"),
    }
    println!("capabilities it imports (each checked against the operator's grants on every call):");
    for capability in info.capabilities().iter().filter(|c| c.interface != "types") {
        println!("  {:10} {} ({})", capability.interface, capability.what, capability.grant);
    }
    let wasi = info.wasi_imports();
    if !wasi.is_empty() {
        println!(
            "WASI imports (answered by the sandbox: no files, sockets or stdout; an environment of what grants.env names):"
        );
        for import in wasi {
            println!("  {import}");
        }
    }
    let foreign = info.foreign_imports();
    if !foreign.is_empty() {
        println!("imports no credbroker provides (it cannot run): {}", foreign.join(", "));
    }
    println!("this credbroker speaks credbroker:plugin@{}", contract::VERSION);
    Ok(if status.is_ok() && foreign.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn client_config(path: Option<&Path>, dirs: &Dirs) -> anyhow::Result<ClientConfig> {
    Ok(match path {
        Some(path) => ClientConfig::load(path, false)?,
        None => ClientConfig::load(&dirs.config_file, true)?,
    })
}

fn install(args: &InstallArgs, dirs: &Dirs) -> anyhow::Result<ExitCode> {
    let config = client_config(args.config.as_deref(), dirs)?;
    // Check the signature before anything lands in the plugin directory.
    if config.plugins.require_signatures {
        let plugin = PluginRef::locate(&args.path.display().to_string(), &[])
            .or_else(|_| PluginRef::locate(&format!("./{}", args.path.display()), &[]))?;
        config.plugins.verify(&plugin.name, &args.path, &plugin.sha256)?;
    }
    let installed =
        catalog::install(&args.path, args.name.as_deref(), args.sha256.as_deref(), &dirs.plugins, args.force)?;
    let worlds: Vec<String> = installed.worlds.iter().map(ToString::to_string).collect();
    if installed.unchanged {
        eprintln!("`{}` is already installed (sha256 {})", installed.name, installed.sha256);
    } else {
        eprintln!(
            "installed `{}` ({}) as {}\n  sha256 {}{}",
            installed.name,
            worlds.join(", "),
            installed.path.display(),
            installed.sha256,
            if installed.signature { ", with its signature" } else { "" }
        );
    }
    if installed.shadows_bundled {
        eprintln!("note: it replaces the bundled plugin `{}` for this user", installed.name);
    }
    eprintln!("pin it in a profile or validator with: sha256 = \"{}\"", installed.sha256);
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &VerifyArgs, dirs: &Dirs, plugin_dirs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let config = client_config(args.config.as_deref(), dirs)?;
    if is_oci(&args.plugin) {
        return verify_oci(args, config.plugins, dirs);
    }
    let plugin = PluginRef::locate(&args.plugin, plugin_dirs)?;
    if let Some(pin) = &args.sha256 {
        plugin.verify_pin(pin)?;
        println!("sha256:    {} (matches the pin)", plugin.sha256);
    } else {
        println!("sha256:    {}", plugin.sha256);
    }
    let mut policy = TrustPolicy {
        require_signatures: true,
        trusted_keys: config.plugins.trusted_keys.clone(),
        ..TrustPolicy::default()
    };
    policy.trusted_keys.extend(args.keys.iter().cloned());
    if policy.trusted_keys.is_empty() && args.sha256.is_none() {
        bail!("nothing to verify against: pass --sha256 HEX or --key PUBLIC.pem, or set [plugins] trusted-keys");
    }
    if !policy.trusted_keys.is_empty() {
        match policy.check(&plugin)? {
            Trust::Bundled => println!("signature: not needed (bundled in this binary)"),
            Trust::SignedBy(key) => println!("signature: valid, by trusted key {key}"),
            Trust::NotRequired => {}
        }
    }
    println!("OK");
    Ok(ExitCode::SUCCESS)
}

/// `plugin verify oci://…`: the one path's locate, pin and trust steps, with
/// signatures required and `--key`s trusted besides the configured keys.
fn verify_oci(args: &VerifyArgs, mut policy: TrustPolicy, dirs: &Dirs) -> anyhow::Result<ExitCode> {
    policy.require_signatures = true;
    policy.trusted_keys.extend(args.keys.iter().cloned());
    for registry in policy.registries.values_mut() {
        registry.require_signatures = Some(true);
        if let Some(keys) = &mut registry.trusted_keys {
            keys.extend(args.keys.iter().cloned());
        }
    }
    let spec = credbroker_host::config::PluginSpec {
        plugin: args.plugin.clone(),
        sha256: args.sha256.clone(),
        ..Default::default()
    };
    let (plugin, trust) = sources(dirs).trusted(&spec, &policy)?;
    if let PluginOrigin::Oci { record, .. } = &plugin.origin {
        println!("manifest:  {}", record.manifest_digest);
    }
    let pinned = if args.sha256.is_some() { " (matches the pin)" } else { "" };
    println!("sha256:    {}{pinned}", plugin.sha256);
    if let Trust::SignedBy(key) = trust {
        println!("signature: valid, by trusted key {key}");
    }
    println!("OK");
    Ok(ExitCode::SUCCESS)
}

fn sign(args: &SignArgs, dirs: &Dirs) -> anyhow::Result<ExitCode> {
    if is_oci(&args.path) {
        return sign_oci(args, dirs);
    }
    let key = keys::private_key_of(&args.key)?;
    let path = PathBuf::from(&args.path);
    let plugin = PluginRef::locate(&args.path, &[]).or_else(|_| PluginRef::locate(&format!("./{}", args.path), &[]))?;
    let signature = signing::sign(&plugin.sha256, &key).context("signing")?;
    let path = signing::signature_path(&path);
    let mut text = serde_json::to_string_pretty(&signature)?;
    text.push('\n');
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {} (sha256 {}, key {})", path.display(), signature.sha256, signature.key_id);
    Ok(ExitCode::SUCCESS)
}

/// The `[plugins]` policy `args` name.
fn policy_of(args: &PolicyArgs, dirs: &Dirs) -> anyhow::Result<TrustPolicy> {
    Ok(match &args.serve_config {
        #[cfg(unix)]
        Some(path) => credbroker_host::webhook::config::ServerConfig::load(path)?.plugins,
        #[cfg(not(unix))]
        Some(_) => anyhow::bail!("--serve-config names a webhook configuration; `credbroker serve` runs on Linux"),
        None => client_config(args.config.as_deref(), dirs)?.plugins,
    })
}

fn oci_reference(spec: &str) -> anyhow::Result<OciReference> {
    Ok(OciReference::parse(spec)?)
}

fn sign_oci(args: &SignArgs, dirs: &Dirs) -> anyhow::Result<ExitCode> {
    let reference = oci_reference(&args.path)?;
    let key = keys::signing_key_of(&args.key)?;
    let policy = policy_of(&args.policy, dirs)?;
    policy.registry(&reference)?;
    let connection = policy.connection(&reference);
    // What is signed is the manifest the reference names now.
    let digest = registry::resolve(&reference, &connection).with_context(|| format!("resolving {reference}"))?;
    let signature =
        cosign::sign(&reference, &digest, &key).map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    registry::push_signature(&reference, &digest, signature, &connection)
        .with_context(|| format!("pushing the signature of {reference}"))?;
    eprintln!(
        "signed {} ({digest}) with key {} ({}): pushed {}",
        reference.at_digest(&digest).repository_path(),
        key.public().id(),
        key.public().kind,
        reference.at_tag(&cosign::signature_tag(&digest))
    );
    eprintln!("stores that pulled it before get the signature with: credbroker plugin update {reference}");
    Ok(ExitCode::SUCCESS)
}

fn push(args: &PushArgs, dirs: &Dirs) -> anyhow::Result<ExitCode> {
    let reference = oci_reference(&args.reference)?;
    if reference.tag.is_none() || reference.digest.is_some() {
        bail!(
            "push to a tag: oci://REGISTRY/REPOSITORY:TAG (the digest is the registry's answer, printed after the push)"
        );
    }
    let policy = policy_of(&args.policy, dirs)?;
    policy.registry(&reference)?;
    let wasm = fsutil::read_bounded(&args.path, fsutil::bounds::PLUGIN)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {}", args.path.display(), e.reason()))?;
    let shape =
        contract::ComponentShape::parse(&wasm).with_context(|| format!("{} is not a plugin", args.path.display()))?;
    // A plugin that runs nowhere is not worth publishing.
    shape
        .check_any(&[
            credbroker_host::runtime::World::Provider,
            credbroker_host::runtime::World::Validator,
            credbroker_host::runtime::World::Login,
        ])
        .map_err(|why| anyhow::anyhow!("{} implements no credbroker world: {why}", args.path.display()))?;
    let digest = registry::push(&reference, &wasm, &shape, &policy.connection(&reference))
        .with_context(|| format!("pushing {reference}"))?;
    eprintln!(
        "pushed {} to {reference} (component sha256 {})\nsign it:  credbroker plugin sign {reference} --key KEY.pem",
        args.path.display(),
        credbroker_host::plugin::sha256_hex(&wasm)
    );
    // The pinned reference, for scripts and profiles.
    println!("{}", reference.at_digest(&digest));
    Ok(ExitCode::SUCCESS)
}

fn sources(dirs: &Dirs) -> PluginSources {
    dirs.plugin_sources()
}

fn pull(args: &PullArgs, dirs: &Dirs) -> anyhow::Result<ExitCode> {
    let reference = oci_reference(&args.reference)?;
    let policy = policy_of(&args.policy, dirs)?;
    let plugin = sources(dirs).pull(&reference, &policy)?;
    let trust = policy.check(&plugin)?;
    if let PluginOrigin::Oci { record, .. } = &plugin.origin {
        eprintln!(
            "pulled {reference} ({}) into the plugin store\n  component sha256 {}{}",
            record.manifest_digest,
            plugin.sha256,
            match trust {
                Trust::SignedBy(key) => format!(", signed by trusted key {key}"),
                _ => String::new(),
            }
        );
        println!("{}", reference.at_digest(&record.manifest_digest));
    }
    Ok(ExitCode::SUCCESS)
}

fn update(args: &UpdateArgs, dirs: &Dirs) -> anyhow::Result<ExitCode> {
    let policy = policy_of(&args.policy, dirs)?;
    let sources = sources(dirs);
    let references: Vec<OciReference> = match &args.reference {
        Some(spec) => vec![oci_reference(spec)?],
        None => sources
            .store
            .records()
            .iter()
            .filter_map(|r| OciReference::parse(&r.reference).ok())
            .filter(|r| r.digest.is_none())
            .collect(),
    };
    if references.is_empty() {
        eprintln!("no tags in the plugin store to update");
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for reference in &references {
        match sources.update(reference, &policy) {
            Ok(updated) => match &updated.before {
                Some(before) if *before == updated.after => eprintln!("{reference}: unchanged ({before})"),
                Some(before) => eprintln!("{reference}: {before} -> {}", updated.after),
                None => eprintln!("{reference}: pulled ({})", updated.after),
            },
            // Not a failure: the stored copy is what runs, as it did before.
            Err(PrepareError::Registry { error, .. }) if error.is_unreachable() => {
                eprintln!("warning: {reference}: {error}; the stored copy stays in use");
            }
            Err(e) => {
                failed = true;
                eprintln!("error: {reference}: {e}; the stored copy stays in use");
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let private = args.out.with_extension("pem");
    let public = args.out.with_extension("pub");
    for path in [&private, &public] {
        if path.exists() {
            bail!("{} exists; choose another --out", path.display());
        }
    }
    let kind = match args.kind {
        KeyKindArg::Ed25519 => keys::KeyKind::Ed25519,
        KeyKindArg::EcdsaP256 => keys::KeyKind::EcdsaP256,
    };
    let (private_pem, public_pem) =
        keys::generate_of(kind).map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    let dir = private.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = private.file_name().and_then(|n| n.to_str()).context("--out needs a file name")?;
    fsutil::write_private_atomic(dir, name, private_pem.as_bytes())
        .with_context(|| format!("writing {}", private.display()))?;
    std::fs::write(&public, public_pem).with_context(|| format!("writing {}", public.display()))?;
    let id = keys::verifying_key_of(&public)?.id();
    let what = match kind {
        keys::KeyKind::Ed25519 => "PLUGIN.wasm (or oci://REGISTRY/REPOSITORY:TAG)",
        keys::KeyKind::EcdsaP256 => "oci://REGISTRY/REPOSITORY:TAG",
    };
    eprintln!(
        "wrote {} ({kind}, private, 0600: keep it secret) and {} (public, key {id})\n\
         sign:  credbroker plugin sign {what} --key {}\n\
         trust: [plugins]\n       require-signatures = true\n       trusted-keys = [\"{}\"]",
        private.display(),
        public.display(),
        private.display(),
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}
