//! The Docker socket: what is at the path, whether it was bind-mounted in, and
//! whether something answers `GET /_ping` on it.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::mountinfo::MountInfo;
use ws_init_core::http::parse_response;

pub const PING_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum Ping {
    /// `200 OK` from `/_ping`.
    Answered,
    /// Connected or tried to, but no valid answer (refused, permission denied, timeout, not Docker).
    Failed(String),
    /// Not attempted (no socket there).
    NotTried,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SocketProbe {
    /// The path as configured.
    pub path: PathBuf,
    /// The path with symlinks resolved (`/var/run` → `/run` in most images):
    /// mountinfo names the resolved path.
    pub resolved: PathBuf,
    pub exists: bool,
    pub is_socket: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    /// The socket itself is a mount point: bind-mounted from outside the container.
    pub is_mount_point: bool,
    /// Read-only mount flag of the filesystem holding the socket.
    pub mount_read_only: Option<bool>,
    pub ping: Ping,
}

impl SocketProbe {
    pub fn answers(&self) -> bool {
        self.ping == Ping::Answered
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no answer from {path} within {timeout:?}: {source}")]
    Io {
        path: PathBuf,
        timeout: Duration,
        source: std::io::Error,
    },
    #[error("{path} answered, but not like the Docker API ({status})")]
    NotDocker { path: PathBuf, status: String },
}

/// Blocking HTTP/1.0 `GET /_ping` with a timeout on every read and write.
/// Used once at startup and by `doctor`; the async client lives in `docker_api`.
pub fn ping_unix(path: &Path, timeout: Duration) -> Result<(), PingError> {
    let mut s = UnixStream::connect(path).map_err(|source| PingError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    let io = |source| PingError::Io {
        path: path.to_path_buf(),
        timeout,
        source,
    };
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(io)?;
    let mut buf = Vec::new();
    // HTTP/1.0: the server closes after the response; the answer is tiny, cap it anyway.
    s.take(64 * 1024).read_to_end(&mut buf).map_err(io)?;
    // The same response parser as the async client (status, length, chunked).
    match parse_response(&buf, true) {
        Ok(Some(r)) if r.status == 200 && r.body.trim() == "OK" => Ok(()),
        other => Err(PingError::NotDocker {
            path: path.to_path_buf(),
            status: match other {
                Ok(Some(r)) => format!("{} {:?}", r.status, r.body),
                Ok(None) => "incomplete".to_string(),
                Err(e) => e.to_string(),
            },
        }),
    }
}

/// Resolve symlinks of `path` as seen from inside `root` (absolute links are
/// taken relative to `root`, never escaping it). Missing components are kept as is.
pub fn resolve_in_root(root: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    let mut pending: Vec<PathBuf> = path
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.components().next() {
            Some(Component::RootDir) => out = PathBuf::from("/"),
            Some(Component::ParentDir) => {
                out.pop();
            }
            Some(Component::CurDir) | None => {}
            Some(Component::Normal(name)) => {
                let candidate = out.join(name);
                let host = root.join(candidate.strip_prefix("/").unwrap_or(&candidate));
                match std::fs::read_link(&host) {
                    Ok(target) if hops < 40 => {
                        hops += 1;
                        if target.is_absolute() {
                            out = PathBuf::from("/");
                        }
                        pending.extend(
                            target
                                .components()
                                .rev()
                                .map(|c| PathBuf::from(c.as_os_str())),
                        );
                    }
                    _ => out = candidate,
                }
            }
            Some(Component::Prefix(_)) => {}
        }
    }
    out
}

/// Probe the socket at `path` (absolute, as seen inside `root`).
pub fn probe_socket(root: &Path, path: &Path, mounts: &MountInfo) -> SocketProbe {
    let resolved = resolve_in_root(root, path);
    let host_path = root.join(resolved.strip_prefix("/").unwrap_or(&resolved));
    let meta = std::fs::symlink_metadata(&host_path).ok();
    let is_socket = meta.as_ref().is_some_and(|m| m.file_type().is_socket());
    let ping = if is_socket {
        match ping_unix(&host_path, PING_TIMEOUT) {
            Ok(()) => Ping::Answered,
            Err(e) => Ping::Failed(e.to_string()),
        }
    } else {
        Ping::NotTried
    };
    SocketProbe {
        path: path.to_path_buf(),
        is_mount_point: mounts.is_mount_point(&resolved),
        mount_read_only: mounts.mount_for(&resolved).map(|m| m.read_only()),
        resolved,
        exists: meta.is_some(),
        is_socket,
        uid: meta.as_ref().map(|m| m.uid()),
        gid: meta.as_ref().map(|m| m.gid()),
        mode: meta.as_ref().map(|m| m.mode() & 0o7777),
        ping,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn resolves_symlinks_inside_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("run")).unwrap();
        std::fs::create_dir_all(t.path().join("var")).unwrap();
        std::os::unix::fs::symlink("/run", t.path().join("var/run")).unwrap();
        assert_eq!(
            resolve_in_root(t.path(), Path::new("/var/run/docker.sock")),
            Path::new("/run/docker.sock")
        );
        std::os::unix::fs::symlink("../run", t.path().join("rel")).unwrap();
        assert_eq!(
            resolve_in_root(t.path(), Path::new("/rel/x")),
            Path::new("/run/x")
        );
        assert_eq!(
            resolve_in_root(t.path(), Path::new("/nope/x")),
            Path::new("/nope/x")
        );
        // A loop does not hang.
        std::os::unix::fs::symlink("/loop", t.path().join("loop")).unwrap();
        let _ = resolve_in_root(t.path(), Path::new("/loop/x"));
    }

    fn serve_once(listener: UnixListener, reply: &'static [u8]) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = c.read(&mut buf);
            c.write_all(reply).unwrap();
        })
    }

    #[test]
    fn ping_accepts_docker_ok_and_rejects_other_servers() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("d.sock");
        let h = serve_once(
            UnixListener::bind(&p).unwrap(),
            b"HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK",
        );
        ping_unix(&p, PING_TIMEOUT).unwrap();
        h.join().unwrap();
        std::fs::remove_file(&p).unwrap();
        let h = serve_once(
            UnixListener::bind(&p).unwrap(),
            b"HTTP/1.0 404 Not Found\r\n\r\nnope",
        );
        assert!(matches!(
            ping_unix(&p, PING_TIMEOUT),
            Err(PingError::NotDocker { .. })
        ));
        h.join().unwrap();
    }

    #[test]
    fn ping_times_out_on_a_silent_server_and_fails_on_a_dead_socket() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("silent.sock");
        let l = UnixListener::bind(&p).unwrap();
        let start = std::time::Instant::now();
        assert!(matches!(
            ping_unix(&p, Duration::from_millis(200)),
            Err(PingError::Io { .. })
        ));
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(l);
        // The file stays, nobody listens: the stale socket case.
        assert!(matches!(
            ping_unix(&p, PING_TIMEOUT),
            Err(PingError::Connect { .. })
        ));
    }
}
