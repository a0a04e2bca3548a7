//! `credbroker logout`: forget a provider's login.

use std::process::ExitCode;

use clap::{ArgGroup, Args};
use credbroker_host::boundary::text;
use credbroker_host::exec::{self, Removed};

/// Arguments of `credbroker logout`.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("which").required(true).args(["provider", "all"])),
    after_help = "Removes, from the private files and from the OS keyring alike:\n  \
        - the cached credentials of the provider (for every cluster), and\n  \
        - its plugin state: refresh tokens and whatever else the plugin kept.\n\
        The next `credbroker get` logs in anew. `credbroker cache clear` removes cached credentials only."
)]
pub struct LogoutArgs {
    /// The provider: a profile of the config file, or a plugin name.
    #[arg(long)]
    provider: Option<String>,
    /// Every provider.
    #[arg(long)]
    all: bool,
}

/// Run `credbroker logout`.
pub fn run(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let provider = if args.all { None } else { args.provider };
    let removed = exec::forget(provider.as_deref())?;
    print!("{}", report(provider.as_deref(), &removed));
    Ok(ExitCode::SUCCESS)
}

/// What `logout` says it removed.
fn report(provider: Option<&str>, removed: &Removed) -> String {
    let whom = match provider {
        Some(name) => format!("`{}`", text::name(name)),
        None => "every provider".to_string(),
    };
    let mut out = String::new();
    let total = removed.credential_files
        + removed.credential_items
        + removed.kernel_keys
        + removed.state_files
        + removed.state_items;
    if total == 0 {
        out.push_str(&format!("nothing to remove for {whom}\n"));
    } else {
        out.push_str(&format!("logged out of {whom}:\n"));
        let line = |what: &str, files: usize, items: usize, kernel: usize| {
            let mut places = Vec::new();
            if files > 0 {
                places.push(count(files, "file", "files"));
            }
            if items > 0 {
                places.push(count(items, "keyring item", "keyring items"));
            }
            if kernel > 0 {
                places.push(count(kernel, "copy in the kernel keyring", "copies in the kernel keyring"));
            }
            if places.is_empty() { String::new() } else { format!("  removed {what}: {}\n", places.join(", ")) }
        };
        out.push_str(&line(
            "cached credentials",
            removed.credential_files,
            removed.credential_items,
            removed.kernel_keys,
        ));
        out.push_str(&line("plugin state (refresh tokens)", removed.state_files, removed.state_items, 0));
    }
    if let Some(reason) = &removed.keyring_unchecked {
        out.push_str(&format!("  the OS keyring was not searched: {reason}\n"));
    }
    out
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_what_was_removed_where() {
        let removed = Removed { credential_files: 2, state_items: 1, ..Removed::default() };
        assert_eq!(
            report(Some("corp"), &removed),
            "logged out of `corp`:\n  removed cached credentials: 2 files\n  removed plugin state (refresh tokens): 1 keyring item\n"
        );
        let keyring = Removed { credential_items: 1, kernel_keys: 1, ..Removed::default() };
        assert_eq!(
            report(Some("corp"), &keyring),
            "logged out of `corp`:\n  removed cached credentials: 1 keyring item, 1 copy in the kernel keyring\n"
        );
        // The kernel's copy goes even when the keyring does not answer.
        let kernel = Removed { kernel_keys: 2, keyring_unchecked: Some("x".into()), ..Removed::default() };
        assert!(
            report(None, &kernel).starts_with("logged out of every provider:\n  removed cached credentials: 2 copies")
        );
        let none = Removed { keyring_unchecked: Some("no OS keyring answers: x".into()), ..Removed::default() };
        assert_eq!(
            report(None, &none),
            "nothing to remove for every provider\n  the OS keyring was not searched: no OS keyring answers: x\n"
        );
    }
}
