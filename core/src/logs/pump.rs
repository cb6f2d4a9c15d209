//! dockerd's stdout and stderr pipes, read by the poll loop: whatever is
//! available is cut into lines per stream and handed to the [`LogSink`].
//! Nonblocking reads into a buffer on the stack; nothing is kept between
//! turns but each stream's unfinished line.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use super::{LineSplitter, LogSink};
use crate::fd::{pipe, read, set_nonblocking, Read};
use crate::reactor::Interest;

/// Bytes read at once: a pipe's worth of short lines, on the stack (only
/// what a read fills is touched, so a quiet dockerd costs a page or two).
const READ_BUF: usize = 8 * 1024;

/// Reads per stream and turn: a flood on one pipe still lets the loop serve
/// signals, the other stream and the DNS forwarder in between.
const READS_PER_TURN: usize = 16;

/// The write ends of a child's output pipes, for its stdout and stderr
/// (close-on-exec: the spawner duplicates them onto 1 and 2 in the child,
/// and drops these once the child runs so the pipes can reach end-of-file).
#[derive(Debug)]
pub struct ChildOutput {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// A child's stdout and stderr as the loop reads them.
#[derive(Debug)]
pub struct LogPipes {
    streams: [Stream; 2],
}

#[derive(Debug)]
struct Stream {
    /// `None` once the pipe reached its end (or failed) and was closed.
    fd: Option<OwnedFd>,
    lines: LineSplitter,
}

/// Two pipes for a child's output: the read ends (nonblocking,
/// close-on-exec) as [`LogPipes`], the write ends (blocking, close-on-exec)
/// for the child. Keep the `LogPipes` registered until
/// [`LogPipes::is_closed`]: a read end closed early kills the child (and
/// whatever inherited its output, such as containerd) with SIGPIPE.
pub fn pipes_for_child() -> io::Result<(LogPipes, ChildOutput)> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let pipes = LogPipes::new(out_r, err_r)?;
    Ok((
        pipes,
        ChildOutput {
            stdout: out_w,
            stderr: err_w,
        },
    ))
}

impl LogPipes {
    /// The read ends of a child's stdout and stderr; both are made
    /// nonblocking.
    pub fn new(stdout: OwnedFd, stderr: OwnedFd) -> io::Result<LogPipes> {
        set_nonblocking(stdout.as_raw_fd())?;
        set_nonblocking(stderr.as_raw_fd())?;
        let stream = |fd| Stream {
            fd: Some(fd),
            lines: LineSplitter::default(),
        };
        Ok(LogPipes {
            streams: [stream(stdout), stream(stderr)],
        })
    }

    /// Waits for the pipes that are still open to become readable.
    pub fn register(&self, interest: &mut Interest) {
        for fd in self.streams.iter().filter_map(|s| s.fd.as_ref()) {
            interest.read(fd.as_raw_fd());
        }
    }

    /// Reads what the poll reported readable (and still open), each line to
    /// `sink`; a pipe at its end gets its unfinished line flushed and closed.
    pub fn service(&mut self, interest: &Interest, sink: &mut LogSink, now: Instant) {
        let mut buf = [0u8; READ_BUF];
        for stream in &mut self.streams {
            let Some(fd) = stream.fd.as_ref().map(AsRawFd::as_raw_fd) else {
                continue;
            };
            if !interest.readable(fd) {
                continue;
            }
            for _ in 0..READS_PER_TURN {
                match read(fd, &mut buf) {
                    Ok(Read::Data(n)) => stream.lines.push(&buf[..n], |l| sink.line(l, now)),
                    Ok(Read::Empty) => break,
                    Ok(Read::End) => {
                        stream.close(sink, now);
                        break;
                    }
                    Err(e) => {
                        warn!("reading dockerd's output failed: {e}");
                        stream.close(sink, now);
                        break;
                    }
                }
            }
        }
    }

    /// Both pipes reached their end: nothing will come any more.
    pub fn is_closed(&self) -> bool {
        self.streams.iter().all(|s| s.fd.is_none())
    }
}

impl Stream {
    fn close(&mut self, sink: &mut LogSink, now: Instant) {
        self.lines.finish(|l| sink.line(l, now));
        self.fd = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{EchoFilter, LogFile};
    use std::io::Write;

    /// One loop turn: register, poll (at most 1 s), service.
    fn turn(pipes: &mut LogPipes, sink: &mut LogSink) {
        let mut interest = Interest::default();
        pipes.register(&mut interest);
        interest
            .poll(Some(Instant::now() + std::time::Duration::from_secs(1)))
            .unwrap();
        pipes.service(&interest, sink, Instant::now());
    }

    fn sink_in(dir: &std::path::Path) -> (LogSink, std::path::PathBuf) {
        let path = dir.join("dockerd.log");
        let file = LogFile::open(&path, 1 << 20, 999);
        (LogSink::new(file, EchoFilter::default()), path)
    }

    #[test]
    fn both_streams_are_cut_into_lines_across_reads_until_both_end() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, path) = sink_in(dir.path());
        let (mut pipes, child) = pipes_for_child().unwrap();
        let (mut out, mut err) = (
            std::fs::File::from(child.stdout),
            std::fs::File::from(child.stderr),
        );
        let log = || std::fs::read_to_string(&path).unwrap();

        // Half lines on both streams: nothing written yet, nothing mixed.
        out.write_all(b"level=info msg=\"out ").unwrap();
        err.write_all(b"plain err").unwrap();
        turn(&mut pipes, &mut sink);
        assert_eq!(log(), "");

        out.write_all(b"one\"\nlevel=info msg=\"out two\"\nlevel=info ms")
            .unwrap();
        err.write_all(b"or line\r\n").unwrap();
        turn(&mut pipes, &mut sink);
        let text = log();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "level=info msg=\"out one\"",
                "level=info msg=\"out two\"",
                "plain error line"
            ]
        );

        // stdout ends first with an unfinished line: flushed, stderr still read.
        drop(out);
        turn(&mut pipes, &mut sink);
        assert!(!pipes.is_closed());
        assert!(log().ends_with("level=info ms\n"), "{}", log());
        err.write_all(b"last\n").unwrap();
        turn(&mut pipes, &mut sink);
        assert!(log().ends_with("last\n"), "{}", log());
        let mut interest = Interest::default();
        pipes.register(&mut interest);
        assert_eq!(interest.fds.len(), 1, "only stderr is still waited on");

        drop(err);
        turn(&mut pipes, &mut sink);
        assert!(pipes.is_closed());
        let mut interest = Interest::default();
        pipes.register(&mut interest);
        assert!(interest.fds.is_empty());
    }

    #[test]
    fn a_flood_is_read_over_several_turns_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, path) = sink_in(dir.path());
        let (mut pipes, child) = pipes_for_child().unwrap();
        let writer = std::thread::spawn(move || {
            let mut out = std::fs::File::from(child.stdout);
            for i in 0..20_000 {
                writeln!(out, "time=\"t\" level=info msg=\"line {i:05}\"").unwrap();
            }
            drop(child.stderr);
        });
        let mut turns = 0;
        while !pipes.is_closed() {
            turn(&mut pipes, &mut sink);
            turns += 1;
            assert!(turns < 100_000, "the pipes never closed");
        }
        writer.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20_000);
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(*l, format!("time=\"t\" level=info msg=\"line {i:05}\""));
        }
    }

    #[test]
    fn the_read_ends_are_nonblocking_and_all_ends_close_on_exec() {
        let (pipes, child) = pipes_for_child().unwrap();
        let flags = |fd: std::os::fd::RawFd, cmd| {
            // SAFETY: F_GETFL/F_GETFD on descriptors this test owns.
            unsafe { libc::fcntl(fd, cmd) }
        };
        for s in &pipes.streams {
            let fd = s.fd.as_ref().unwrap().as_raw_fd();
            assert_ne!(flags(fd, libc::F_GETFL) & libc::O_NONBLOCK, 0);
            assert_ne!(flags(fd, libc::F_GETFD) & libc::FD_CLOEXEC, 0);
        }
        for fd in [child.stdout.as_raw_fd(), child.stderr.as_raw_fd()] {
            assert_eq!(flags(fd, libc::F_GETFL) & libc::O_NONBLOCK, 0);
            assert_ne!(flags(fd, libc::F_GETFD) & libc::FD_CLOEXEC, 0);
        }
    }
}
