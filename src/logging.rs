//! ws-init's own log lines: one per event, on stderr, text or JSON.

use crate::config::{LogFormat, LogLevel, Settings};
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

/// The level in effect: the core's terminal rule
/// ([`ws_init_core::log::effective_level`]), so both programs agree.
pub fn effective_level(level: LogLevel, level_set: bool, stderr_is_terminal: bool) -> LogLevel {
    ws_init_core::log::effective_level(level.into(), level_set, stderr_is_terminal).into()
}

/// Sends the lines of core code running in this program (the tests that
/// drive the core's parts capture them this way) through the tracing
/// subscriber in effect, so they share its format, level filter and
/// captures. Idempotent.
pub fn route_core_log() {
    use ws_init_core::log::Level;
    fn forward(level: Level, args: std::fmt::Arguments<'_>) {
        match level {
            Level::Error => tracing::error!("{args}"),
            Level::Warn => tracing::warn!("{args}"),
            Level::Info => tracing::info!("{args}"),
            Level::Debug => tracing::debug!("{args}"),
            Level::Trace => tracing::trace!("{args}"),
        }
    }
    // tracing's filter decides; the core's own would cut debug lines first.
    ws_init_core::log::init(Level::Trace, false);
    ws_init_core::log::set_output(forward);
}

/// Installs the global subscriber. Lines are prefixed `ws-init` in text mode
/// so they stand out among the main command's output on the same terminal.
pub fn init(settings: &Settings) {
    route_core_log();
    let on_terminal = nix::unistd::isatty(2).unwrap_or(false);
    let level = effective_level(settings.log_level, settings.log_level_set, on_terminal);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(filter(level))
        .with_target(false);
    let _ = match settings.log_format {
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
