//! dockerd's output: every line to a size-bounded file, the warnings and
//! errors also to ws-init's stderr, without flooding it.
//!
//! dockerd and the containerd it starts log in logrus text format
//! (`time="…" level=warning msg="…" error="…"`), or JSON with
//! `--log-format=json`; errors from before logging is set up (bad flags, a
//! bad config file, "failed to start daemon: …") and Go panics are plain
//! lines. Parsing and the echo decision are pure; the file and the pipe are
//! thin layers around them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::user::atomic::Dir;

/// Longest line kept whole; longer ones are cut into pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;

/// logrus levels, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
    Panic,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warning" | "warn" => Level::Warning,
            "error" => Level::Error,
            "fatal" => Level::Fatal,
            "panic" => Level::Panic,
            _ => return None,
        })
    }
}

/// What a line says, as far as the echo decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// `None`: a plain line without a level.
    pub level: Option<Level>,
    /// The message and its fields, without the timestamp and level.
    pub text: String,
    /// The logrus `module` field (`grpc` marks gRPC transport chatter).
    pub module: Option<String>,
}

/// How a line reaches stderr, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warn,
    Error,
}

/// Warnings dockerd 20.10 prints on every start inside a container that say
/// nothing actionable; they stay in the log file so stderr shows what matters.
pub const BENIGN_WARNINGS: [&str; 5] = [
    "containerd config version `1` has been deprecated",
    "devmapper not configured",
    "Your kernel does not support cgroup blkio weight",
    "cleanup warnings",
    // Printed each time a container ends (its shim exits): routine, not a fault.
    "cleaning up after shim disconnected",
];

impl Parsed {
    /// Warnings and worse are echoed (but the known-benign ones); plain lines too, since dockerd prints
    /// its fatal start-up errors (and Go its panics) without a level.
    /// gRPC transport warnings are retries dockerd handles itself: file only.
    pub fn severity(&self) -> Option<Severity> {
        if self.module.as_deref() == Some("grpc") {
            return None;
        }
        match self.level {
            None => Some(Severity::Warn),
            Some(l) if l >= Level::Error => Some(Severity::Error),
            Some(Level::Warning) if BENIGN_WARNINGS.iter().any(|b| self.text.contains(b)) => None,
            Some(Level::Warning) => Some(Severity::Warn),
            Some(_) => None,
        }
    }
}

/// Parses one line of dockerd or containerd output.
pub fn parse_line(line: &str) -> Parsed {
    let line = line.trim_end();
    if line.starts_with('{') {
        if let Some(p) = parse_json(line) {
            return p;
        }
    }
    if let Some(fields) = parse_logfmt(line) {
        if let Some(level) = fields
            .iter()
            .find(|(k, _)| k == "level")
            .and_then(|(_, v)| Level::parse(v))
        {
            return from_fields(Some(level), fields);
        }
    }
    // Go runtime failures carry their severity in the first word.
    let level = if line.starts_with("panic:") || line.starts_with("fatal error:") {
        Some(Level::Panic)
    } else {
        None
    };
    Parsed {
        level,
        text: line.to_string(),
        module: None,
    }
}

fn from_fields(level: Option<Level>, fields: Vec<(String, String)>) -> Parsed {
    let mut msg = String::new();
    let mut rest = Vec::new();
    let mut module = None;
    for (k, v) in fields {
        match k.as_str() {
            "time" | "level" => {}
            "msg" => msg = v,
            _ => {
                if k == "module" {
                    module = Some(v.clone());
                }
                rest.push(if v.contains(' ') || v.is_empty() {
                    format!("{k}={v:?}")
                } else {
                    format!("{k}={v}")
                });
            }
        }
    }
    let mut text = msg;
    for field in rest {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&field);
    }
    Parsed {
        level,
        text,
        module,
    }
}

fn parse_json(line: &str) -> Option<Parsed> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).ok()?;
    let level = Level::parse(map.get("level")?.as_str()?)?;
    let fields = map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect();
    // logrus puts msg among the other keys; keep it first in the text.
    Some(from_fields(Some(level), fields))
}

/// Splits `key=value key="quoted \"value\""` pairs; `None` if the line is not
/// entirely in that form.
pub fn parse_logfmt(line: &str) -> Option<Vec<(String, String)>> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        let mut has_value = false;
        for c in chars.by_ref() {
            if c == '=' {
                has_value = true;
                break;
            }
            if c == ' ' || c == '"' {
                return None;
            }
            key.push(c);
        }
        if key.is_empty() || !has_value {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            }
            if !closed || chars.peek().is_some_and(|c| *c != ' ') {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        fields.push((key, value));
    }
    if fields.is_empty() {
        None
    } else {
        Some(fields)
    }
}

/// Decides which echo lines reach stderr: an identical text is printed once
/// per `repeat_window` (the next print says how often it was held back), and
/// at most `burst` lines per `burst_window` (a panic's stack trace must not
/// flood the terminal; the rest is in the file).
#[derive(Debug)]
pub struct EchoFilter {
    repeat_window: Duration,
    burst: u32,
    burst_window: Duration,
    seen: HashMap<String, Seen>,
    window_start: Option<Instant>,
    in_window: u32,
    dropped: u64,
}

#[derive(Debug)]
struct Seen {
    printed_at: Instant,
    held_back: u64,
}

/// A line to print, with what was held back before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// Times this same text was held back since it was last printed.
    pub repeats: u64,
    /// Other lines dropped by the burst limit since the last print.
    pub dropped: u64,
}

/// Bound on remembered texts; older ones are forgotten when it is reached.
const MAX_REMEMBERED: usize = 512;

impl Default for EchoFilter {
    fn default() -> Self {
        EchoFilter::new(Duration::from_secs(60), 20, Duration::from_secs(10))
    }
}

impl EchoFilter {
    pub fn new(repeat_window: Duration, burst: u32, burst_window: Duration) -> EchoFilter {
        EchoFilter {
            repeat_window,
            burst,
            burst_window,
            seen: HashMap::new(),
            window_start: None,
            in_window: 0,
            dropped: 0,
        }
    }

    /// `Some` when `text` should be printed now.
    pub fn decide(&mut self, text: &str, now: Instant) -> Option<Echo> {
        let repeats = match self.seen.get_mut(text) {
            Some(seen) if now.saturating_duration_since(seen.printed_at) < self.repeat_window => {
                seen.held_back += 1;
                return None;
            }
            Some(seen) => seen.held_back,
            None => 0,
        };
        let window_over = match self.window_start {
            Some(start) => now.saturating_duration_since(start) >= self.burst_window,
            None => true,
        };
        if window_over {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= self.burst {
            self.dropped += 1;
            return None;
        }
        self.in_window += 1;
        if self.seen.len() >= MAX_REMEMBERED && !self.seen.contains_key(text) {
            let window = self.repeat_window;
            self.seen
                .retain(|_, s| now.saturating_duration_since(s.printed_at) < window);
            if self.seen.len() >= MAX_REMEMBERED {
                self.seen.clear();
            }
        }
        self.seen.insert(
            text.to_string(),
            Seen {
                printed_at: now,
                held_back: 0,
            },
        );
        let dropped = std::mem::take(&mut self.dropped);
        Some(Echo { repeats, dropped })
    }
}

/// First wait before reopening the log after an error; doubles up to
/// [`REOPEN_MAX_DELAY`].
pub const REOPEN_FIRST_DELAY: Duration = Duration::from_secs(1);
pub const REOPEN_MAX_DELAY: Duration = Duration::from_secs(60);

/// An append-only log file that rotates to `<path>.1` (one old generation)
/// before a write would take it past `max_bytes`.
///
/// The directory may be one a user can write (`WS_DOCKERD_LOG` is free), so
/// nothing here follows a link: the file is opened with `O_NOFOLLOW`
/// relative to the opened directory, a link or other non-file planted at its
/// name is removed (with a warning) and a fresh file created, owner and mode
/// (`root:<docker gid> 0640`, so the docker group can read what dockerd's
/// errors point to) are set on the open descriptor, and rotation renames
/// within that directory or, failing that, truncates the file we hold open.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    name: std::ffi::OsString,
    gid: u32,
    max_bytes: u64,
    dir: Option<Dir>,
    file: Option<File>,
    size: u64,
    /// A failure was reported and not yet followed by a success.
    failed: bool,
    /// When to try opening again after a failure, and the wait after that.
    retry_at: Option<Instant>,
    retry_delay: Duration,
}

impl LogFile {
    /// Opens (creating the directory if needed) for appending, group `gid`
    /// (the docker group). A file that cannot be opened is reported once;
    /// lines are then only echoed until a reopen succeeds.
    pub fn open(path: &Path, max_bytes: u64, gid: u32) -> LogFile {
        let mut log = LogFile {
            path: path.to_path_buf(),
            name: path.file_name().unwrap_or_default().to_owned(),
            gid,
            max_bytes,
            dir: None,
            file: None,
            size: 0,
            failed: false,
            retry_at: None,
            retry_delay: REOPEN_FIRST_DELAY,
        };
        log.reopen();
        log
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reopen(&mut self) {
        self.file = None;
        let result = (|| -> io::Result<(File, u64)> {
            if self.dir.is_none() {
                let parent = self.path.parent().unwrap_or(Path::new("/"));
                // The directory's own path is root's configuration: followed.
                std::fs::create_dir_all(parent)?;
                self.dir = Some(Dir::open(parent)?);
            }
            let dir = self.dir.as_ref().expect("opened above");
            let file = open_log_in(dir, &self.name, &self.path, self.gid)?;
            let size = file.metadata()?.len();
            Ok((file, size))
        })();
        match result {
            Ok((file, size)) => {
                if self.failed {
                    tracing::info!("the dockerd log {} is written again", self.path.display());
                }
                self.file = Some(file);
                self.size = size;
                self.failed = false;
                self.retry_at = None;
                self.retry_delay = REOPEN_FIRST_DELAY;
            }
            Err(e) => {
                // The directory may have been replaced: look it up again next time.
                self.dir = None;
                self.fail("open", e);
            }
        }
    }

    fn fail(&mut self, what: &str, e: io::Error) {
        self.file = None;
        if !self.failed {
            tracing::warn!(
                "cannot {what} the dockerd log {}: {e}; dockerd's warnings still reach stderr \
                 and ws-init keeps retrying (free disk space, or set WS_DOCKERD_LOG to a \
                 writable path)",
                self.path.display()
            );
        }
        self.failed = true;
        let now = Instant::now();
        self.retry_at = Some(now + self.retry_delay);
        self.retry_delay = (self.retry_delay * 2).min(REOPEN_MAX_DELAY);
    }

    /// The rotated generation's path: `<path>.1`.
    pub fn old_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }

    /// Appends `line` and a newline.
    pub fn write_line(&mut self, line: &[u8]) {
        if self.file.is_none() && self.retry_at.is_some_and(|at| Instant::now() >= at) {
            self.reopen();
        }
        let len = line.len() as u64 + 1;
        if self.file.is_some() && self.size > 0 && self.size + len > self.max_bytes {
            self.rotate();
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        match file.write_all(&buf) {
            Ok(()) => self.size += len,
            Err(e) => self.fail("write", e),
        }
    }

    fn rotate(&mut self) {
        let (Some(dir), Some(file)) = (self.dir.as_ref(), self.file.as_ref()) else {
            return;
        };
        let mut old = self.name.clone();
        old.push(".1");
        match dir.rename(&self.name, &old) {
            Ok(()) => self.reopen(),
            Err(e) => {
                // Keep the bound even if the old generation cannot be kept:
                // truncate the file we hold, never a path (it may be a link now).
                tracing::debug!("cannot rotate {}: {e}; truncating it", self.path.display());
                match file.set_len(0) {
                    Ok(()) => self.size = 0,
                    Err(e) => self.fail("truncate", e),
                }
            }
        }
    }
}

/// Opens `name` in `dir` for appending without following a link. Anything
/// but a regular file with one link (a symlink, a hard link to another file,
/// a fifo) is removed with a warning and replaced by a new file.
fn open_log_in(dir: &Dir, name: &std::ffi::OsStr, path: &Path, gid: u32) -> io::Result<File> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_NONBLOCK;
    for _ in 0..3 {
        let planted = match dir.open_file(name, flags, 0o640) {
            Ok(file) => {
                let meta = file.metadata()?;
                if meta.is_file() && meta.nlink() == 1 {
                    if nix::unistd::geteuid().is_root() {
                        std::os::unix::fs::fchown(&file, Some(0), Some(gid))?;
                    }
                    file.set_permissions(std::fs::Permissions::from_mode(0o640))?;
                    return Ok(file);
                }
                if meta.is_file() {
                    "a hard link to another file"
                } else {
                    "not a regular file"
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => "a symbolic link",
            // A fifo without a reader.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => "not a regular file",
            Err(e) => return Err(e),
        };
        tracing::warn!(
            "the dockerd log {} is {planted}; ws-init does not write through it and replaces it \
             with a new file",
            path.display()
        );
        dir.unlink(name)?;
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "something keeps replacing it with a link",
    ))
}

/// `text` with control characters (but tab) written as escapes: `\n`,
/// `\r`, `\u{1b}`; a backslash before them stays as it is.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Cuts a byte stream into lines (without `\n` or a trailing `\r`); a line
/// longer than `MAX_LINE` is emitted in pieces.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) {
        for &b in data {
            if b == b'\n' {
                let mut line = &self.pending[..];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                emit(line);
                self.pending.clear();
            } else {
                self.pending.push(b);
                if self.pending.len() >= MAX_LINE {
                    emit(&self.pending);
                    self.pending.clear();
                }
            }
        }
    }

    /// Emits an unterminated last line, if any.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

/// Where each line of dockerd's output goes: the file, and stderr when it matters.
#[derive(Debug)]
pub struct LogSink {
    file: LogFile,
    echo: EchoFilter,
}

impl LogSink {
    pub fn new(file: LogFile, echo: EchoFilter) -> LogSink {
        LogSink { file, echo }
    }

    pub fn file(&self) -> &LogFile {
        &self.file
    }

    /// One line of dockerd output.
    pub fn line(&mut self, raw: &[u8], now: Instant) {
        self.file.write_line(raw);
        let text = String::from_utf8_lossy(raw);
        if text.trim().is_empty() {
            return;
        }
        let parsed = parse_line(&text);
        let Some(severity) = parsed.severity() else {
            return;
        };
        // dockerd's text must not pass for ws-init's own lines or drive the
        // terminal: newlines and other control characters are shown escaped.
        let text = escape_controls(&parsed.text);
        let Some(echo) = self.echo.decide(&text, now) else {
            return;
        };
        let mut note = String::new();
        if echo.repeats > 0 {
            note.push_str(&format!(" (repeated {} more times)", echo.repeats));
        }
        if echo.dropped > 0 {
            note.push_str(&format!(
                " ({} more lines not shown, see {})",
                echo.dropped,
                self.file.path().display()
            ));
        }
        match severity {
            Severity::Error => tracing::error!("dockerd: {text}{note}"),
            Severity::Warn => tracing::warn!("dockerd: {text}{note}"),
        }
    }

    /// A line of ws-init's own about dockerd, so the file tells the whole story.
    pub fn note(&mut self, text: &str) {
        self.file.write_line(format!("[ws-init] {text}").as_bytes());
    }
}

/// Reads dockerd's output pipe to its end (dockerd and every process that
/// inherited the pipe, such as containerd, have closed it).
pub async fn pump(mut pipe: tokio::net::unix::pipe::Receiver, sink: Rc<RefCell<LogSink>>) {
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let now = Instant::now();
                let mut sink = sink.borrow_mut();
                splitter.push(&buf[..n], |line| sink.line(line, now));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading dockerd's output failed: {e}");
                break;
            }
        }
    }
    let now = Instant::now();
    let mut sink = sink.borrow_mut();
    splitter.finish(|line| sink.line(line, now));
}

#[cfg(test)]
mod tests;
