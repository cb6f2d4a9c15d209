//! The reader: dockerd's output pipe cut into lines, each to the file and,
//! when it matters, to stderr.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use tokio::io::AsyncReadExt;

use super::{escape_controls, parse_line, EchoFilter, LogFile, Severity};

/// Longest line kept whole; longer ones are cut into pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;

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
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_on_newlines_with_crlf_and_long_lines_cut() {
        let mut s = LineSplitter::default();
        let mut out: Vec<Vec<u8>> = Vec::new();
        s.push(b"one\r\ntw", |l| out.push(l.to_vec()));
        s.push(b"o\n\nthree", |l| out.push(l.to_vec()));
        s.finish(|l| out.push(l.to_vec()));
        assert_eq!(
            out,
            vec![
                b"one".to_vec(),
                b"two".to_vec(),
                b"".to_vec(),
                b"three".to_vec()
            ]
        );

        let mut out = Vec::new();
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        s.push(&long, |l| out.push(l.len()));
        s.push(b"\n", |l| out.push(l.len()));
        assert_eq!(out, vec![MAX_LINE, MAX_LINE, 5]);
    }

    #[test]
    fn an_unwritable_log_path_does_not_stop_anything() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        // A directory path through a regular file cannot be created.
        let mut log = LogFile::open(&blocker.join("dockerd.log"), 100, 999);
        log.write_line(b"lost but harmless");
        let mut sink = LogSink::new(log, EchoFilter::default());
        sink.line(br#"level=error msg="still echoed""#, Instant::now());
    }

    #[test]
    fn the_sink_writes_every_line_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dockerd.log");
        let mut sink = LogSink::new(LogFile::open(&path, 1 << 20, 999), EchoFilter::default());
        let now = Instant::now();
        sink.note("starting dockerd");
        sink.line(br#"time="t" level=info msg="Starting up""#, now);
        sink.line(b"\xff not utf-8", now);
        let content = std::fs::read(&path).unwrap();
        assert_eq!(
        content,
        b"[ws-init] starting dockerd\ntime=\"t\" level=info msg=\"Starting up\"\n\xff not utf-8\n"
            .to_vec()
    );
    }
}
