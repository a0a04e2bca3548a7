//! `credbroker`: a Kubernetes credential broker whose identity providers are
//! sandboxed WebAssembly components.

mod commands;
mod logging;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = commands::Cli::parse_args();
    if let Err(error) =
        logging::init(cli.global.verbose, cli.global.quiet, cli.command.default_log_level(), cli.command.log_format())
    {
        eprintln!("credbroker: error: {error}");
        return ExitCode::FAILURE;
    }
    match cli.command.run() {
        Ok(code) => code,
        Err(error) => {
            // Everything for people goes to stderr; stdout stays empty on
            // failure. kubectl passes this on to the user's terminal, and parts
            // of it came from a plugin, a file or the command line: escape
            // anything that could drive the terminal (line breaks stay).
            let message = format!("{error:#}");
            eprintln!("credbroker: error: {}", credbroker_host::boundary::text::multi_line(&message));
            ExitCode::FAILURE
        }
    }
}
