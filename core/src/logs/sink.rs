//! Where dockerd's output goes: cut into lines, each to the file and, when
//! it matters, to stderr.

use std::time::Instant;

use super::{escape_controls, parse_line, EchoFilter, LogFile, Severity};

/// Longest line kept whole; longer ones are cut into pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;

/// Cuts a byte stream into lines (without `\n` or a trailing `\r`); a line
/// longer than `MAX_LINE` is emitted in pieces.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// The start of a line whose end has not arrived (shorter than `MAX_LINE`).
    pending: Vec<u8>,
}

/// A pending buffer grown past this (by a long line) is freed once empty,
/// so one long line does not keep its memory for the workspace's life.
const KEEP_PENDING: usize = 1024;

impl LineSplitter {
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8])) {
        while !data.is_empty() {
            // At most what fits before the line is cut: a newline in it ends
            // the line before the cut would.
            let room = MAX_LINE - self.pending.len();
            let window = &data[..data.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) if self.pending.is_empty() => {
                    emit(without_cr(&window[..i]));
                    data = &data[i + 1..];
                }
                Some(i) => {
                    self.pending.extend_from_slice(&window[..i]);
                    emit(without_cr(&self.pending));
                    self.pending.clear();
                    data = &data[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(window);
                    data = &data[window.len()..];
                    if self.pending.len() >= MAX_LINE {
                        emit(&self.pending);
                        self.pending.clear();
                    }
                }
            }
        }
        self.release();
    }

    /// Emits an unterminated last line, if any.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
        self.release();
    }

    fn release(&mut self) {
        if self.pending.is_empty() && self.pending.capacity() > KEEP_PENDING {
            self.pending = Vec::new();
        }
    }
}

fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
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
            Severity::Error => error!("dockerd: {text}{note}"),
            Severity::Warn => warn!("dockerd: {text}{note}"),
        }
    }

    /// A line of ws-init's own about dockerd, so the file tells the whole story.
    pub fn note(&mut self, text: &str) {
        self.file.write_line(format!("[ws-init] {text}").as_bytes());
    }
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

    /// The splitter as it was first written, byte by byte: the reference.
    fn split_bytewise(data: &[u8]) -> Vec<Vec<u8>> {
        let (mut out, mut pending) = (Vec::new(), Vec::new());
        for &b in data {
            if b == b'\n' {
                let line: &[u8] = &pending;
                out.push(line.strip_suffix(b"\r").unwrap_or(line).to_vec());
                pending.clear();
            } else {
                pending.push(b);
                if pending.len() >= MAX_LINE {
                    out.push(std::mem::take(&mut pending));
                }
            }
        }
        if !pending.is_empty() {
            out.push(pending);
        }
        out
    }

    #[test]
    fn how_the_input_is_cut_into_reads_changes_no_line() {
        let mut data = Vec::new();
        for i in 0..300usize {
            // Lengths around MAX_LINE (a CR right at the cut too), empty lines.
            let len = match i % 6 {
                0 => MAX_LINE - 1,
                1 => MAX_LINE,
                2 => MAX_LINE + 1,
                3 => 0,
                _ => i * 7,
            };
            data.extend((0..len).map(|j| b'a' + (j % 26) as u8));
            if i % 5 == 0 {
                data.push(b'\r');
            }
            data.push(b'\n');
        }
        data.extend_from_slice(b"unterminated");
        let want = split_bytewise(&data);
        assert!(want.len() > 300);
        for chunk in [1, 3, 4096, MAX_LINE - 1, MAX_LINE + 7, data.len()] {
            let mut s = LineSplitter::default();
            let mut got = Vec::new();
            for piece in data.chunks(chunk) {
                s.push(piece, |l| got.push(l.to_vec()));
            }
            s.finish(|l| got.push(l.to_vec()));
            assert!(got == want, "cut every {chunk} bytes");
            assert!(
                s.pending.capacity() <= KEEP_PENDING,
                "a long line's buffer kept"
            );
        }
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
