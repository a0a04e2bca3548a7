//! `credbroker cache`: manage cached credentials.

use std::process::ExitCode;

use clap::Subcommand;
use credbroker_host::exec;

/// Cache subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Remove cached credentials (all, or one provider's) from the files and the keyring, forcing a new login.
    ///
    /// Refresh tokens and other plugin state stay, so the next login may be a
    /// silent refresh; `credbroker logout` removes those too.
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
            let count = removed.credential_files + removed.credential_items;
            let what = if count == 1 { "credential" } else { "credentials" };
            let whose = provider.map(|p| format!(" of provider `{}`", credbroker_host::boundary::text::name(&p)));
            let copies = match removed.kernel_keys {
                0 => String::new(),
                1 => " (and 1 copy in the kernel keyring)".to_string(),
                n => format!(" (and {n} copies in the kernel keyring)"),
            };
            eprintln!("removed {count} cached {what}{}{copies}", whose.unwrap_or_default());
            eprintln!("refresh tokens and plugin state were kept; `credbroker logout` removes them too");
            Ok(ExitCode::SUCCESS)
        }
    }
}
