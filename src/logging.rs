//! Logging to stderr: `-v`/`-q` pick the level, `CREDBROKER_LOG` (an
//! env-filter directive such as `debug` or `credbroker::plugin=trace`) overrides.

use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber, span};

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
    match std::env::var("CREDBROKER_LOG") {
        Ok(directives) if !directives.is_empty() => {
            let filter =
                tracing_subscriber::EnvFilter::builder().with_default_directive(level.into()).parse_lossy(directives);
            stderr_formatter().with_env_filter(filter).init();
        }
        // The only failure is a logger already installed: keep that one.
        _ => {
            drop(tracing::subscriber::set_global_default(Deferred { level: level.into(), formatter: OnceLock::new() }))
        }
    }
}

/// The stderr formatter before its filter is chosen.
type Formatter = tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, ()>,
    LevelFilter,
    fn() -> std::io::Stderr,
>;

fn stderr_formatter() -> Formatter {
    tracing_subscriber::fmt().with_writer(std::io::stderr as fn() -> std::io::Stderr).with_target(false).without_time()
}

/// A level filter that sets the formatter up only when something is logged.
///
/// `credbroker get` runs before every kubectl command and, when the credential
/// is cached, usually logs nothing; the formatter's span registry alone
/// allocates and zeroes tens of KiB, page faults included, at every start.
struct Deferred {
    level: LevelFilter,
    formatter: OnceLock<Dispatch>,
}

impl Deferred {
    fn formatter(&self) -> &Dispatch {
        self.formatter.get_or_init(|| Dispatch::new(stderr_formatter().with_max_level(self.level).finish()))
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
