//! Logging to stderr: `-v`/`-q` pick the level, `CREDBROKER_LOG` (an
//! env-filter directive such as `debug` or `credbroker::plugin=trace`) overrides.

use tracing::Level;

/// Install the stderr logger.
pub fn init(verbose: u8, quiet: bool, default: Level) {
    let level = if quiet {
        Level::ERROR
    } else {
        match (default, verbose) {
            (level, 0) => level,
            (Level::WARN, 1) | (Level::ERROR, 1) => Level::INFO,
            (Level::INFO, 1) => Level::DEBUG,
            (_, 1) => Level::DEBUG,
            (_, 2) => Level::DEBUG,
            _ => Level::TRACE,
        }
    };
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).without_time();
    // The env filter is only built when asked for: `credbroker get` runs on
    // every kubectl command and must start fast.
    match std::env::var("CREDBROKER_LOG") {
        Ok(directives) if !directives.is_empty() => {
            let filter =
                tracing_subscriber::EnvFilter::builder().with_default_directive(level.into()).parse_lossy(directives);
            builder.with_env_filter(filter).init();
        }
        _ => builder.with_max_level(level).init(),
    }
}
