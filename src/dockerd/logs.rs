//! dockerd's output: every line to a size-bounded file, the warnings and
//! errors also to ws-init's stderr. The parsing, echo filter, file and sink
//! live in the core (`ws_init_core::logs`), which PID 1 drives from its poll
//! loop; `pump` is the tokio reader the tokio supervisor still uses.

mod pump;

pub use pump::pump;
pub use ws_init_core::logs::{
    escape_controls, parse_line, parse_logfmt, Echo, EchoFilter, Level, LineSplitter, LogFile,
    LogSink, Parsed, Severity, BENIGN_WARNINGS, MAX_LINE, REOPEN_FIRST_DELAY, REOPEN_MAX_DELAY,
};
