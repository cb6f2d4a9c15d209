//! ws-init's own log lines: one per event, on stderr, text or JSON.

use crate::config::{LogFormat, LogLevel};
use tracing::level_filters::LevelFilter;

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// Installs the global subscriber. Lines are prefixed `ws-init` in text mode
/// so they stand out among the main command's output on the same terminal.
pub fn init(level: LogLevel, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(filter(level))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(false)
            .event_format(
                tracing_subscriber::fmt::format()
                    .with_target(false)
                    .with_ansi(false)
                    .without_time()
                    .compact(),
            )
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
