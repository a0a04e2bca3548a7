//! The command line: one module per subcommand.

mod cache;
mod certs;
mod doctor;
mod get;
mod kubeconfig;
mod logout;
mod plugin;
#[cfg(unix)]
mod serve;
mod setup;
mod webhook_kubeconfig;
mod whoami;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::Level;

/// A Kubernetes credential broker with sandboxed WebAssembly identity plugins.
///
/// `credbroker get` is the exec credential plugin kubectl runs (name it in
/// kubeconfig under users[].user.exec); `credbroker serve` is the webhook token
/// authenticator kube-apiserver asks.
#[derive(Debug, Parser)]
#[command(name = "credbroker", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The options of every subcommand.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl Cli {
    /// Parse the command line; on an error, print it (or the help asked for)
    /// and exit.
    ///
    /// kubectl runs `credbroker get` before every request, and building the
    /// whole command tree (every subcommand's arguments and help texts) is
    /// most of what clap costs it: the memory it touches is page-faulted in
    /// on every run. So a command line starting with `get` is parsed by a tree
    /// holding `get` alone, declared from the same types and giving the same
    /// answers, help and errors (checked by a test).
    pub fn parse_args() -> Self {
        if std::env::args_os().nth(1).is_some_and(|first| first == "get") {
            return GetCli::parse().into();
        }
        Self::parse()
    }
}

/// The command tree for `credbroker get` alone (see [`Cli::parse_args`]).
#[derive(Debug, Parser)]
#[command(name = "credbroker", version, propagate_version = true)]
struct GetCli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: GetOnly,
}

#[derive(Debug, Subcommand)]
enum GetOnly {
    /// Print an ExecCredential for kubectl (the exec credential plugin).
    Get(get::GetArgs),
}

impl From<GetCli> for Cli {
    fn from(cli: GetCli) -> Self {
        let GetOnly::Get(args) = cli.command;
        Self { global: cli.global, command: Command::Get(args) }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an ExecCredential for kubectl (the exec credential plugin).
    Get(get::GetArgs),
    /// Answer TokenReviews for kube-apiserver (the webhook token authenticator).
    #[cfg(unix)]
    Serve(serve::ServeArgs),
    /// The webhook is not built for Windows: this says so.
    #[cfg(not(unix))]
    #[command(hide = true)]
    Serve {
        /// Whatever was given.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Remove cached credentials and refresh tokens (plugin state) of a provider, or of all.
    Logout(logout::LogoutArgs),
    /// Ask the API server who it thinks you are (a SelfSubjectReview with your credential).
    Whoami(whoami::WhoamiArgs),
    /// Manage the credential cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Add or update the kubeconfig user (and context) that runs `credbroker get`.
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// Check the set-up end to end and say what to fix.
    Doctor(doctor::DoctorArgs),
    /// Log in to an OpenID Connect provider once and print its token's claims and the configuration that maps them.
    Setup(setup::SetupArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "bash: credbroker completions bash > ~/.local/share/bash-completion/completions/credbroker\n\
        zsh:  credbroker completions zsh > \"${fpath[1]}/_credbroker\"\n\
        fish: credbroker completions fish > ~/.config/fish/completions/credbroker.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Create a development PKI for the webhook.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// List, inspect, install, sign and verify plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

impl Command {
    /// The log level without -v/-q: `get` is quiet, kubectl shows its stderr.
    pub fn default_log_level(&self) -> Level {
        match self {
            Self::Get(_)
            | Self::Cache(_)
            | Self::Logout(_)
            | Self::Whoami(_)
            | Self::Certs(_)
            | Self::Plugin(_)
            | Self::Kubeconfig(_)
            | Self::Doctor(_)
            | Self::Setup(_)
            | Self::Completions { .. } => Level::WARN,
            #[cfg(unix)]
            Self::Serve(_) => Level::INFO,
            #[cfg(not(unix))]
            Self::Serve { .. } => Level::WARN,
        }
    }

    /// The log format its command line asks for, if any (`serve --log-format`).
    pub fn log_format(&self) -> Option<crate::logging::LogFormat> {
        match self {
            #[cfg(unix)]
            Self::Serve(args) => args.log_format(),
            _ => None,
        }
    }

    /// Run the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Get(args) => get::run(args),
            #[cfg(unix)]
            Self::Serve(args) => serve::run(args),
            #[cfg(not(unix))]
            Self::Serve { .. } => anyhow::bail!(
                "`credbroker serve` (the webhook) runs on Linux, in pods; this build for {} has the client \
                 commands (get, kubeconfig, doctor, plugin, cache, logout, whoami, setup)",
                std::env::consts::OS
            ),
            Self::Cache(command) => cache::run(command),
            Self::Logout(args) => logout::run(args),
            Self::Whoami(args) => whoami::run(args),
            Self::Certs(command) => certs::run(command),
            Self::Kubeconfig(args) => kubeconfig::run(args),
            Self::Doctor(args) => doctor::run(args),
            Self::Setup(args) => setup::run(args),
            Self::Completions { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(shell, &mut Cli::command(), "credbroker", &mut std::io::stdout());
                Ok(ExitCode::SUCCESS)
            }
            Self::Plugin(command) => plugin::run(command),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What clap makes of a command line: the parsed value's debug form, or
    /// the text it prints (an error, the help, the version).
    fn outcome(parsed: Result<Cli, clap::Error>) -> String {
        match parsed {
            Ok(cli) => format!("{cli:?}"),
            Err(e) => format!("{:?}: {}", e.kind(), e.render()),
        }
    }

    #[test]
    fn the_get_only_tree_answers_like_the_whole_one() {
        for line in [
            "get --provider ldap",
            "get --provider=ldap --set a=b --set c=env:D -v",
            "get -q --plugin ./p.wasm --allow-http https://idp.example --allow-file /etc/x --no-cache",
            "get --api-version v1 --config /c.toml --provider x",
            "get --api-version v3 --provider x",
            "get --storage keyring --provider x",
            "get --storage disk --provider x",
            "get --provider a --plugin b",
            "get -q -v --provider a",
            "get",
            "get --bogus",
            "get --provider",
            "get extra --provider a",
            "get --help",
            "get -h",
            "get --version",
        ] {
            let argv = std::iter::once("credbroker").chain(line.split(' '));
            let whole = outcome(Cli::try_parse_from(argv.clone()));
            let alone = outcome(GetCli::try_parse_from(argv).map(Cli::from));
            assert_eq!(alone, whole, "credbroker {line}");
        }
    }
}
