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

impl Level {
    /// `WS_LOG_LEVEL`'s names (any case; empty is `info`).
    pub fn from_name(name: &str) -> Option<Level> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "" | "info" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => return None,
        })
    }
}

/// The level in effect. On a terminal (`docker run -it IMAGE bash`) our
/// lines would land in the user's session, so the default there is `warn`:
/// warnings and errors still show, INFO lines do not. A detached workspace
/// (`docker logs`) keeps INFO; an explicit `WS_LOG_LEVEL` always wins.
pub fn effective_level(level: Level, level_set: bool, stderr_is_terminal: bool) -> Level {
    if stderr_is_terminal && !level_set && level == Level::Info {
        Level::Warn
    } else {
        level
    }
}

/// The settings from `WS_LOG_LEVEL` and `WS_LOG_FORMAT`, for the lines
/// written before bring-up hands over the validated ones (it refuses values
/// that do not parse; until then they count as unset).
pub fn init_from_env() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let given = var("WS_LOG_LEVEL");
    let level = Level::from_name(&given).unwrap_or(Level::Info);
    // SAFETY: isatty on a descriptor number.
    let on_terminal = unsafe { libc::isatty(2) } == 1;
    let json = var("WS_LOG_FORMAT").trim().eq_ignore_ascii_case("json");
    init(
        effective_level(level, !given.trim().is_empty(), on_terminal),
        json,
    );
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
    let line = if JSON.load(Ordering::Relaxed) != 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        json_line(now, tag.trim_start(), &args.to_string())
    } else {
        format!("{tag} {args}\n")
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// One JSON object per line, with the keys the bring-up program's JSON
/// subscriber writes: `timestamp` (RFC 3339, UTC), `level`, `message`.
fn json_line(since_epoch: std::time::Duration, level: &str, message: &str) -> String {
    let secs = since_epoch.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    let mut out = format!(
        "{{\"timestamp\":\"{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z\",\"level\":\"{level}\",\"message\":\"",
        t / 3600,
        t / 60 % 60,
        t % 60,
        since_epoch.subsec_micros()
    );
    for c in message.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str("\"}\n");
    out
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_hides_info_unless_asked_for() {
        assert_eq!(effective_level(Level::Info, false, true), Level::Warn);
        assert_eq!(effective_level(Level::Info, false, false), Level::Info);
        assert_eq!(effective_level(Level::Info, true, true), Level::Info);
        assert_eq!(effective_level(Level::Debug, true, true), Level::Debug);
        assert_eq!(effective_level(Level::Error, true, true), Level::Error);
    }

    #[test]
    fn level_names() {
        assert_eq!(Level::from_name(" WARNING "), Some(Level::Warn));
        assert_eq!(Level::from_name(""), Some(Level::Info));
        assert_eq!(Level::from_name("Trace"), Some(Level::Trace));
        assert_eq!(Level::from_name("loud"), None);
    }

    #[test]
    fn json_lines_have_a_utc_timestamp_and_escaped_text() {
        let t = std::time::Duration::new(1_796_169_600 + 3_723, 456_789_000);
        assert_eq!(
            json_line(t, "WARN", "say \"hi\"\n\\ \u{1}"),
            "{\"timestamp\":\"2026-12-02T01:02:03.456789Z\",\"level\":\"WARN\",\"message\":\"say \\\"hi\\\"\\n\\\\ \\u0001\"}\n"
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
