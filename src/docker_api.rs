//! Readiness over the Docker API, without an HTTP client library.
//!
//! The only request we need is `GET /_ping`, and the only answer that counts
//! is status 200 with body `OK`, so a few lines of HTTP/1.1 over a unix or TCP
//! socket (with `Connection: close`, read to the end) are enough. TLS
//! endpoints cannot be pinged without a TLS client: they get a TCP connect
//! check and say so ([`Reachability::TcpOnly`]). `ssh://` is the docker CLI's
//! business: we cannot check it at all ([`Reachability::Unchecked`]).

pub use ws_init_core::http;

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

pub use crate::config::docker_host::{Endpoint, EndpointError, DEFAULT_SOCKET, TLS_PORT};
use crate::config::Settings;

/// Pause between two readiness attempts: short, so readiness is noticed
/// within a few milliseconds of dockerd answering.
pub const POLL_INTERVAL: Duration = Duration::from_millis(15);
/// Bound for one attempt, so a daemon that accepts but hangs is retried.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// The answer is a few hundred bytes; anything much larger is not dockerd.
const MAX_RESPONSE: usize = 64 * 1024;

/// How far a successful check got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// `GET /_ping` answered 200 `OK`.
    Pinged,
    /// A TLS endpoint accepted a TCP connection; we have no TLS client, so
    /// whether the API and the certificates work is left to the docker CLI.
    TcpOnly,
    /// `ssh://`: nothing we can check; the docker CLI connects over ssh itself.
    Unchecked,
}

impl fmt::Display for Reachability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reachability::Pinged => "the Docker API answered /_ping",
            Reachability::TcpOnly => {
                "the TLS port accepts connections (API and certificates not checked: ws-init has no TLS client)"
            }
            Reachability::Unchecked => "cannot check an ssh:// endpoint, the docker CLI handles ssh",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("{endpoint}: the socket does not exist (dockerd not started yet, or not running)")]
    NoSocket { endpoint: String },
    #[error("{endpoint}: permission denied (the user needs to be in the socket's group, e.g. `docker`; run with --group-add <socket gid>)")]
    PermissionDenied { endpoint: String },
    #[error("{endpoint}: connection refused (nothing listens there: is dockerd running?)")]
    Refused { endpoint: String },
    #[error("{endpoint}: {source}")]
    Io { endpoint: String, source: io::Error },
    #[error("{endpoint}: no answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("{endpoint}: /_ping answered HTTP {status}: {body:?}")]
    Status {
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error("{endpoint}: the answer is not a Docker API response ({why})")]
    NotDocker { endpoint: String, why: String },
    #[error("{endpoint}: cannot check an ssh:// endpoint, the docker CLI handles ssh")]
    Ssh { endpoint: String },
}

fn io_error(endpoint: &Endpoint, e: io::Error) -> PingError {
    let endpoint = endpoint.to_string();
    match e.kind() {
        io::ErrorKind::NotFound => PingError::NoSocket { endpoint },
        io::ErrorKind::PermissionDenied => PingError::PermissionDenied { endpoint },
        io::ErrorKind::ConnectionRefused => PingError::Refused { endpoint },
        _ => PingError::Io {
            endpoint,
            source: e,
        },
    }
}

const PING_REQUEST: &[u8] = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";

/// One `GET /_ping` over a unix socket.
pub async fn ping_unix(path: &Path, timeout: Duration) -> Result<(), PingError> {
    let endpoint = Endpoint::Unix(path.to_path_buf());
    with_timeout(&endpoint, timeout, async {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| io_error(&endpoint, e))?;
        exchange(&endpoint, stream).await
    })
    .await
}

/// One `GET /_ping` over plain TCP (`addr` is `host:port`; names are resolved).
pub async fn ping_tcp(addr: &str, timeout: Duration) -> Result<(), PingError> {
    let endpoint = Endpoint::Tcp {
        addr: addr.to_string(),
        tls: false,
    };
    with_timeout(&endpoint, timeout, async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| io_error(&endpoint, e))?;
        exchange(&endpoint, stream).await
    })
    .await
}

/// A TCP connection check only (for TLS endpoints).
pub async fn connect_tcp(addr: &str, timeout: Duration) -> Result<(), PingError> {
    let endpoint = Endpoint::Tcp {
        addr: addr.to_string(),
        tls: true,
    };
    with_timeout(&endpoint, timeout, async {
        TcpStream::connect(addr)
            .await
            .map(drop)
            .map_err(|e| io_error(&endpoint, e))
    })
    .await
}

/// One check of `endpoint`, as far as we can take it.
pub async fn check(endpoint: &Endpoint, timeout: Duration) -> Result<Reachability, PingError> {
    match endpoint {
        Endpoint::Unix(path) => ping_unix(path, timeout)
            .await
            .map(|()| Reachability::Pinged),
        Endpoint::Tcp { addr, tls: false } => {
            ping_tcp(addr, timeout).await.map(|()| Reachability::Pinged)
        }
        Endpoint::Tcp { addr, tls: true } => connect_tcp(addr, timeout)
            .await
            .map(|()| Reachability::TcpOnly),
        Endpoint::Ssh(_) => Ok(Reachability::Unchecked),
    }
}

async fn with_timeout<F>(endpoint: &Endpoint, timeout: Duration, fut: F) -> Result<(), PingError>
where
    F: std::future::Future<Output = Result<(), PingError>>,
{
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(PingError::Timeout {
            endpoint: endpoint.to_string(),
            timeout,
        }),
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    endpoint: &Endpoint,
    mut stream: S,
) -> Result<(), PingError> {
    stream
        .write_all(PING_REQUEST)
        .await
        .map_err(|e| io_error(endpoint, e))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    let resp = loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| io_error(endpoint, e))?;
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE {
            return Err(PingError::NotDocker {
                endpoint: endpoint.to_string(),
                why: format!("more than {MAX_RESPONSE} bytes"),
            });
        }
        // A framed body (Content-Length) completes before the peer closes.
        match http::parse_response(&buf, n == 0) {
            Ok(Some(resp)) => break resp,
            Ok(None) => continue,
            Err(why) => {
                return Err(PingError::NotDocker {
                    endpoint: endpoint.to_string(),
                    why: why.to_string(),
                })
            }
        }
    };
    if resp.status == 200 && resp.body.trim() == "OK" {
        Ok(())
    } else if resp.status == 200 {
        Err(PingError::NotDocker {
            endpoint: endpoint.to_string(),
            why: format!(
                "status 200 but body {:?} instead of \"OK\"",
                truncate(&resp.body, 200)
            ),
        })
    } else {
        Err(PingError::Status {
            endpoint: endpoint.to_string(),
            status: resp.status,
            body: truncate(&resp.body, 200).to_string(),
        })
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A successful wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub reachability: Reachability,
    pub waited: Duration,
    pub attempts: u32,
}

/// The wait ended at the deadline; `last` is the last attempt's error.
#[derive(Debug, thiserror::Error)]
#[error("Docker did not answer within {waited:?} ({attempts} attempts); last error: {last}")]
pub struct NotReady {
    pub last: PingError,
    pub waited: Duration,
    pub attempts: u32,
}

/// Checks `endpoint` every [`POLL_INTERVAL`] until it answers or `deadline`
/// passes. At least one attempt is made, even with a deadline in the past.
pub async fn wait_ready(endpoint: &Endpoint, deadline: Instant) -> Result<Ready, NotReady> {
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let now = Instant::now();
        let budget = deadline
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(50), ATTEMPT_TIMEOUT);
        let err = match check(endpoint, budget).await {
            Ok(reachability) => {
                return Ok(Ready {
                    reachability,
                    waited: start.elapsed(),
                    attempts,
                })
            }
            Err(e) => e,
        };
        let next = Instant::now() + POLL_INTERVAL;
        if next >= deadline {
            return Err(NotReady {
                last: err,
                waited: start.elapsed(),
                attempts,
            });
        }
        tokio::time::sleep_until(next).await;
    }
}

/// What `ws-init wait-docker` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOutcome {
    /// `WS_DOCKER_ENABLE_CLIENT` is off: nothing to wait for (healthy).
    Disabled,
    /// The endpoint answered as far as we can check (see [`Reachability`]).
    Ready {
        endpoint: Endpoint,
        reachability: Reachability,
        waited: Duration,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("{0}")]
    NotReady(#[from] NotReady),
}

/// `ws-init wait-docker`: Ok at once when Docker is disabled, else waits up
/// to `timeout` for the endpoint of `DOCKER_HOST` (or the default socket;
/// `DOCKER_TLS_VERIFY` is already in the parsed [`crate::config::DockerHost`]).
pub async fn wait_docker(settings: &Settings, timeout: Duration) -> Result<WaitOutcome, WaitError> {
    if !settings.docker_enable_client {
        return Ok(WaitOutcome::Disabled);
    }
    let endpoint = match (
        crate::rootless::client::client_socket(settings),
        &settings.docker_host,
    ) {
        (Some(socket), _) => Endpoint::Unix(socket),
        (None, Some(host)) => host.connectable()?.clone(),
        (None, None) => Endpoint::Unix(DEFAULT_SOCKET.into()),
    };
    let ready = wait_ready(&endpoint, Instant::now() + timeout).await?;
    Ok(WaitOutcome::Ready {
        endpoint,
        reachability: ready.reachability,
        waited: ready.waited,
    })
}

#[cfg(test)]
mod tests;
