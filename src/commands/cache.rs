//! `credbroker cache`: manage cached credentials.

use std::process::ExitCode;

use clap::Subcommand;
use credbroker_host::exec;

/// Cache subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Remove cached credentials (all, or one provider's), forcing a new login.
    Clear {
        /// Only this provider's credentials.
        #[arg(long)]
        provider: Option<String>,
    },
}

/// Run a cache subcommand.
pub fn run(command: CacheCommand) -> anyhow::Result<ExitCode> {
    match command {
        CacheCommand::Clear { provider } => {
            let removed = exec::clear_cache(provider.as_deref())?;
            let what = if removed == 1 { "credential" } else { "credentials" };
            match provider {
                Some(p) => eprintln!("removed {removed} cached {what} of provider `{p}`"),
                None => eprintln!("removed {removed} cached {what}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
