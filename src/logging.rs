//! Logging to stderr: `-v`/`-q` pick the level, `CREDBROKER_LOG` (an
//! env-filter directive such as `debug` or `credbroker::plugin=trace`)
//! overrides; lines are text, coloured only on a terminal without `NO_COLOR`,
//! or JSON (`CREDBROKER_LOG_FORMAT=json`, `serve --log-format json`).

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber, span};
use tracing_subscriber::EnvFilter;

/// What a log line looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `LEVEL message`, for people (coloured on a terminal).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The variable that picks the format when no flag does.
const FORMAT_VARIABLE: &str = "CREDBROKER_LOG_FORMAT";

/// Install the stderr logger, in `format` if given, else as
/// `CREDBROKER_LOG_FORMAT` says (text when unset or empty).
///
/// # Errors
///
/// `CREDBROKER_LOG_FORMAT` is neither `text` nor `json`.
pub fn init(verbose: u8, quiet: bool, default: Level, format: Option<LogFormat>) -> Result<(), String> {
    let format = match format {
        Some(format) => format,
        None => format_from_env()?,
    };
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
    // The only failure of set_global_default is a logger already installed: keep that one.
    match std::env::var("CREDBROKER_LOG") {
        Ok(directives) if !directives.is_empty() => {
            let filter = EnvFilter::builder().with_default_directive(level.into()).parse_lossy(directives);
            drop(tracing::dispatcher::set_global_default(stderr_formatter(
                format,
                Filter::Directives(Box::new(filter)),
            )));
        }
        _ => drop(tracing::subscriber::set_global_default(Deferred {
            level: level.into(),
            format,
            formatter: OnceLock::new(),
        })),
    }
    Ok(())
}

/// `CREDBROKER_LOG_FORMAT`: text when unset or empty.
fn format_from_env() -> Result<LogFormat, String> {
    match std::env::var(FORMAT_VARIABLE) {
        Err(std::env::VarError::NotPresent) => Ok(LogFormat::Text),
        Ok(value) if value.is_empty() => Ok(LogFormat::Text),
        Ok(value) => <LogFormat as clap::ValueEnum>::from_str(&value, true)
            .map_err(|_| format!("{FORMAT_VARIABLE} must be `text` or `json`, not `{value}`")),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{FORMAT_VARIABLE} must be `text` or `json`")),
    }
}

/// Which lines the formatter writes.
enum Filter {
    /// Up to a level (the common case: cheap to check).
    Level(LevelFilter),
    /// `CREDBROKER_LOG`'s directives (boxed: an EnvFilter is large).
    Directives(Box<EnvFilter>),
}

/// Whether text lines get ANSI colours: only when stderr is a terminal and
/// `NO_COLOR` (<https://no-color.org>) is unset or empty. Container logs and
/// kubectl, which captures a plugin's stderr, get plain text.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The stderr formatter: text without time or target (a terminal or kubectl
/// shows the lines as they come, a container runtime stamps them), or JSON
/// with both.
fn stderr_formatter(format: LogFormat, filter: Filter) -> Dispatch {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr as fn() -> std::io::Stderr);
    match format {
        LogFormat::Text => {
            let text = builder.with_target(false).without_time().with_ansi(colour());
            match filter {
                Filter::Level(level) => Dispatch::new(text.with_max_level(level).finish()),
                Filter::Directives(directives) => Dispatch::new(text.with_env_filter(*directives).finish()),
            }
        }
        LogFormat::Json => {
            let json = builder.json().with_ansi(false);
            match filter {
                Filter::Level(level) => Dispatch::new(json.with_max_level(level).finish()),
                Filter::Directives(directives) => Dispatch::new(json.with_env_filter(*directives).finish()),
            }
        }
    }
}

/// A level filter that sets the formatter up only when something is logged.
///
/// `credbroker get` runs before every kubectl command and, when the credential
/// is cached, usually logs nothing; the formatter's span registry alone
/// allocates and zeroes tens of KiB, page faults included, at every start.
/// Whether stderr is a terminal is asked only then, too.
struct Deferred {
    level: LevelFilter,
    format: LogFormat,
    formatter: OnceLock<Dispatch>,
}

impl Deferred {
    fn formatter(&self) -> &Dispatch {
        self.formatter.get_or_init(|| stderr_formatter(self.format, Filter::Level(self.level)))
    }
}

impl Subscriber for Deferred {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) { Interest::always() } else { Interest::never() }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.level >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.level)
    }

    fn new_span(&self, span: &span::Attributes<'_>) -> span::Id {
        self.formatter().new_span(span)
    }

    fn record(&self, span: &span::Id, values: &span::Record<'_>) {
        self.formatter().record(span, values);
    }

    fn record_follows_from(&self, span: &span::Id, follows: &span::Id) {
        self.formatter().record_follows_from(span, follows);
    }

    fn event(&self, event: &Event<'_>) {
        self.formatter().event(event);
    }

    fn enter(&self, span: &span::Id) {
        self.formatter().enter(span);
    }

    fn exit(&self, span: &span::Id) {
        self.formatter().exit(span);
    }

    fn clone_span(&self, id: &span::Id) -> span::Id {
        self.formatter().clone_span(id)
    }

    fn try_close(&self, id: span::Id) -> bool {
        self.formatter().try_close(id)
    }

    fn current_span(&self) -> tracing_core::span::Current {
        self.formatter().current_span()
    }
}
