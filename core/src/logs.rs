//! dockerd's output: every line to a size-bounded file, the warnings and
//! errors also to ws-init's stderr, without flooding it.
//!
//! dockerd and the containerd it starts log in logrus text format
//! (`time="…" level=warning msg="…" error="…"`), or JSON with
//! `--log-format=json`; errors from before logging is set up (bad flags, a
//! bad config file, "failed to start daemon: …") and Go panics are plain
//! lines. Parsing and the echo decision are pure; the file and the pipes are
//! thin layers around them:
//!
//! - `parse`: logfmt and JSON lines to level, message and severity; escaping.
//! - `echo`: the filter that keeps repeats and bursts off stderr.
//! - `file`: the bounded, rotated log file that never follows a link.
//! - `sink`: the line splitter and the sink each line goes through.
//! - `pump`: the child's stdout and stderr pipes, read by the poll loop.

mod echo;
mod file;
mod parse;
mod pump;
mod sink;

pub use echo::{Echo, EchoFilter};
pub use file::{LogFile, REOPEN_FIRST_DELAY, REOPEN_MAX_DELAY};
pub use parse::{
    escape_controls, parse_line, parse_logfmt, Level, Parsed, Severity, BENIGN_WARNINGS,
};
pub use pump::{pipes_for_child, ChildOutput, LogPipes};
pub use sink::{LineSplitter, LogSink, MAX_LINE};
