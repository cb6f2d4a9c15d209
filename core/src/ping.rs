//! dockerd's readiness, as PID 1 checks it: `GET /_ping` on its unix socket
//! every [`POLL_INTERVAL`], each attempt bounded by [`ATTEMPT_TIMEOUT`],
//! driven by the poll loop (nothing here blocks).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::http;
use crate::reactor::{after, Interest};

/// Between two attempts: short, so a starting dockerd is seen at once.
pub const POLL_INTERVAL: Duration = Duration::from_millis(15);
/// One attempt's bound.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
const PING_REQUEST: &[u8] = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";
const MAX_RESPONSE: usize = 64 * 1024;

/// What one finished probe found.
pub type Outcome = Result<(), String>;

struct Attempt {
    stream: UnixStream,
    deadline: Instant,
    sent: usize,
    buf: Vec<u8>,
}

/// Probes until dockerd answers or `warn_at` passes.
pub struct Probe {
    socket: PathBuf,
    warn_at: Instant,
    next_attempt: Instant,
    attempt: Option<Attempt>,
    last_error: String,
}

impl Probe {
    pub fn new(socket: &Path, now: Instant, warn_after: Duration) -> Probe {
        Probe {
            socket: socket.to_path_buf(),
            warn_at: after(now, warn_after),
            next_attempt: now,
            attempt: None,
            last_error: "no attempt finished yet".into(),
        }
    }

    fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn register(&self, interest: &mut Interest) {
        if let Some(a) = &self.attempt {
            let fd = a.stream.as_raw_fd();
            if a.sent < PING_REQUEST.len() {
                interest.write(fd);
            } else {
                interest.read(fd);
            }
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        Some(match &self.attempt {
            Some(a) => a.deadline,
            None => self.next_attempt,
        })
    }

    /// Moves the probe on; `Some` once it has an answer or the warning time
    /// has come without one (the caller may start a new probe then).
    pub fn service(&mut self, interest: &Interest, now: Instant) -> Option<Outcome> {
        if self.attempt.is_none() && now >= self.next_attempt {
            match connect(&self.socket) {
                Ok(stream) => {
                    self.attempt = Some(Attempt {
                        stream,
                        deadline: after(now, ATTEMPT_TIMEOUT),
                        sent: 0,
                        buf: Vec::new(),
                    })
                }
                Err(e) => self.fail(describe(&self.endpoint(), &e), now),
            }
        }
        if let Some(a) = self.attempt.as_mut() {
            let fd = a.stream.as_raw_fd();
            let step = if interest.writable(fd) || interest.readable(fd) || a.sent == 0 {
                exchange(a)
            } else {
                Ok(None)
            };
            match step {
                Ok(Some(())) => {
                    self.attempt = None;
                    return Some(Ok(()));
                }
                Ok(None) if now >= a.deadline => {
                    let why = format!("{}: no answer within {ATTEMPT_TIMEOUT:?}", self.endpoint());
                    self.fail(why, now);
                }
                Ok(None) => {}
                Err(why) => {
                    let why = format!("{}: {why}", self.endpoint());
                    self.fail(why, now);
                }
            }
        }
        if self.attempt.is_none() && now >= self.warn_at {
            return Some(Err(self.last_error.clone()));
        }
        None
    }

    fn fail(&mut self, why: String, now: Instant) {
        self.attempt = None;
        self.last_error = why;
        self.next_attempt = after(now, POLL_INTERVAL);
    }
}

/// A nonblocking connection (a unix socket connects at once or fails).
fn connect(path: &Path) -> io::Result<UnixStream> {
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_un is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `addr` is a valid sockaddr_un for the length given.
    let r = unsafe {
        libc::connect(
            owned.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UnixStream::from(owned))
}

/// Writes what is left of the request, reads what has arrived; `Some` once
/// a whole 200 response is in.
fn exchange(a: &mut Attempt) -> Result<Option<()>, String> {
    while a.sent < PING_REQUEST.len() {
        match a.stream.write(&PING_REQUEST[a.sent..]) {
            Ok(n) => a.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
    }
    let mut chunk = [0u8; 1024];
    loop {
        let (n, eof) = match a.stream.read(&mut chunk) {
            Ok(0) => (0, true),
            Ok(n) => (n, false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        a.buf.extend_from_slice(&chunk[..n]);
        if a.buf.len() > MAX_RESPONSE {
            return Err(format!(
                "the answer is not a Docker API response (more than {MAX_RESPONSE} bytes)"
            ));
        }
        match http::parse_response(&a.buf, eof) {
            Ok(Some(r)) if r.status == 200 => return Ok(Some(())),
            Ok(Some(r)) => return Err(format!("/_ping answered HTTP {}: {:?}", r.status, r.body)),
            Ok(None) => {}
            Err(why) => return Err(format!("the answer is not a Docker API response ({why})")),
        }
    }
}

/// The connect error, worded as `wait-docker` words it.
fn describe(endpoint: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => format!(
            "{endpoint}: the socket does not exist (dockerd not started yet, or not running)"
        ),
        io::ErrorKind::ConnectionRefused => {
            format!("{endpoint}: connection refused (nothing listens there: is dockerd running?)")
        }
        _ => format!("{endpoint}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn drive(p: &mut Probe, until: Instant) -> Option<Outcome> {
        let mut interest = Interest::default();
        loop {
            interest.clear();
            p.register(&mut interest);
            interest.poll(p.deadline().map(|d| d.min(until))).unwrap();
            let now = Instant::now();
            if let Some(o) = p.service(&interest, now) {
                return Some(o);
            }
            if now >= until {
                return None;
            }
        }
    }

    #[test]
    fn a_missing_socket_is_reported_at_the_warning_time() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let t = Instant::now();
        let mut p = Probe::new(&sock, t, Duration::from_millis(100));
        let out = drive(&mut p, t + Duration::from_secs(2)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(100));
        let err = out.unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn a_server_answering_200_is_ready_and_others_are_not() {
        for (answer, ready) in [
            ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK", true),
            (
                "HTTP/1.1 500 Internal\r\nContent-Length: 4\r\n\r\nbusy",
                false,
            ),
            ("SSH-2.0-OpenSSH\r\n", false),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let sock = dir.path().join("d.sock");
            let listener = UnixListener::bind(&sock).unwrap();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = [0u8; 256];
                let n = s.read(&mut req).unwrap();
                assert!(req[..n].starts_with(b"GET /_ping"));
                s.write_all(answer.as_bytes()).unwrap();
            });
            let t = Instant::now();
            let mut p = Probe::new(&sock, t, Duration::from_millis(300));
            let out = drive(&mut p, t + Duration::from_secs(3)).unwrap();
            server.join().unwrap();
            assert_eq!(out.is_ok(), ready, "{answer:?}: {out:?}");
        }
    }
}
