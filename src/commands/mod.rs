//! The command line: one module per subcommand.

mod cache;
mod certs;
mod doctor;
mod get;
mod kubeconfig;
mod plugin;
mod serve;
mod webhook_kubeconfig;

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
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an ExecCredential for kubectl (the exec credential plugin).
    Get(get::GetArgs),
    /// Answer TokenReviews for kube-apiserver (the webhook token authenticator).
    Serve(serve::ServeArgs),
    /// Manage the credential cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Add or update the kubeconfig user (and context) that runs `credbroker get`.
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// Check the set-up end to end and say what to fix.
    Doctor(doctor::DoctorArgs),
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
            | Self::Certs(_)
            | Self::Plugin(_)
            | Self::Kubeconfig(_)
            | Self::Doctor(_)
            | Self::Completions { .. } => Level::WARN,
            Self::Serve(_) => Level::INFO,
        }
    }

    /// Run the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Get(args) => get::run(args),
            Self::Serve(args) => serve::run(args),
            Self::Cache(command) => cache::run(command),
            Self::Certs(command) => certs::run(command),
            Self::Kubeconfig(args) => kubeconfig::run(args),
            Self::Doctor(args) => doctor::run(args),
            Self::Completions { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(shell, &mut Cli::command(), "credbroker", &mut std::io::stdout());
                Ok(ExitCode::SUCCESS)
            }
            Self::Plugin(command) => plugin::run(command),
        }
    }
}
