//! ws-init's own log lines on stderr, in the format the bring-up program's
//! tracing subscriber writes (text or JSON), so the two read as one log.
//! Written with one `write` per line: no buffering, no allocation beyond the
//! line itself.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicU8 = AtomicU8::new(0);

/// Where lines go instead of stderr, once set. Until the switch-over the
/// tokio program routes the core's lines into its tracing subscriber, so
/// they keep its format, its level filter and its test captures.
static OUTPUT: OnceLock<fn(Level, fmt::Arguments<'_>)> = OnceLock::new();

/// Sets what is written from now on.
pub fn init(max: Level, json: bool) {
    MAX_LEVEL.store(max as u8, Ordering::Relaxed);
    JSON.store(json as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Sends every line from now on to `output` instead of stderr (the first
/// call wins; later ones change nothing).
pub fn set_output(output: fn(Level, fmt::Arguments<'_>)) {
    let _ = OUTPUT.set(output);
}

/// Writes one line at `level` (if enabled).
pub fn emit(level: Level, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    if let Some(output) = OUTPUT.get() {
        return output(level, args);
    }
    let tag = match level {
        Level::Error => "ERROR",
        Level::Warn => " WARN",
        Level::Info => " INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    };
    let line = format!("{tag} {args}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Error, format_args!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Warn, format_args!($($t)*)) } }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Debug, format_args!($($t)*)) } }
#[macro_export]
macro_rules! trace { ($($t:tt)*) => { $crate::log::emit($crate::log::Level::Trace, format_args!($($t)*)) } }
