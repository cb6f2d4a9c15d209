//! `DOCKER_HOST`, parsed once at start (with `DOCKER_TLS_VERIFY`): config
//! refuses a bad value, and probe, plan, the readiness client and the remote
//! check all read the same [`DockerHost`].

use std::fmt;
use std::path::PathBuf;

/// Where dockerd listens when `DOCKER_HOST` is not set.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The port the docker CLI and dockerd use for TLS by convention.
pub const TLS_PORT: u16 = 2376;

/// A set, non-empty `DOCKER_HOST`: the value as given (for messages) and
/// the endpoint it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerHost {
    pub value: String,
    /// `None` for `fd://` and `npipe://`: accepted (the docker CLI knows
    /// them), but nothing ws-init can connect to.
    pub endpoint: Option<Endpoint>,
}

impl DockerHost {
    /// Parse a non-empty `DOCKER_HOST`; `tls_verify` is `DOCKER_TLS_VERIFY`
    /// set and non-empty (a tcp endpoint then speaks TLS).
    pub fn parse(value: &str, tls_verify: bool) -> Result<DockerHost, EndpointError> {
        let value = value.trim();
        let endpoint = if value.starts_with("fd://") || value.starts_with("npipe://") {
            None
        } else {
            Some(Endpoint::from_docker_host_tls(
                Some(value),
                tls_verify.then_some("1"),
            )?)
        };
        Ok(DockerHost {
            value: value.to_string(),
            endpoint,
        })
    }

    /// The endpoint ws-init connects to, or why it cannot.
    pub fn connectable(&self) -> Result<&Endpoint, EndpointError> {
        self.endpoint
            .as_ref()
            .ok_or_else(|| EndpointError::Unrecognised(self.value.clone()))
    }
}

impl fmt::Display for DockerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// Shown as the value given (doctor's JSON keeps its shape).
impl serde::Serialize for DockerHost {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.value)
    }
}

/// A Docker API endpoint, as named by `DOCKER_HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host:port` as given (a name or an address); `tls` when the client
    /// verifies TLS (DOCKER_TLS_VERIFY or port 2376).
    Tcp {
        addr: String,
        tls: bool,
    },
    /// `ssh://user@host[:port]`: only the docker CLI can reach it.
    Ssh(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("DOCKER_HOST={0:?}: expected unix:///path, tcp://host:port or ssh://user@host")]
    Unrecognised(String),
    #[error("DOCKER_HOST={0:?}: {1}")]
    Invalid(String, &'static str),
}

impl Endpoint {
    /// The endpoint for a `DOCKER_HOST` value (`None` or empty: the default
    /// socket). TLS is assumed for port 2376, the docker CLI's convention.
    pub fn from_docker_host(host: Option<&str>) -> Result<Endpoint, EndpointError> {
        Self::from_docker_host_tls(host, None)
    }

    /// Like [`Endpoint::from_docker_host`], also honouring `DOCKER_TLS_VERIFY`
    /// (any non-empty value means the client speaks TLS).
    pub fn from_docker_host_tls(
        host: Option<&str>,
        tls_verify: Option<&str>,
    ) -> Result<Endpoint, EndpointError> {
        let raw = host.map(str::trim).unwrap_or("");
        if raw.is_empty() {
            return Ok(Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET)));
        }
        let invalid = |why| EndpointError::Invalid(raw.to_string(), why);
        if let Some(path) = raw.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(invalid(
                    "a unix socket needs an absolute path: unix:///var/run/docker.sock",
                ));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = raw.strip_prefix("tcp://") {
            // The CLI accepts a trailing path (a URL prefix); only host:port matters here.
            let hostport = rest.split('/').next().unwrap_or("");
            if hostport.is_empty() {
                return Err(invalid("no host: expected tcp://host:port"));
            }
            let (host_part, port) = split_host_port(hostport)
                .ok_or_else(|| invalid("bad port: expected tcp://host:port"))?;
            if host_part.is_empty() {
                return Err(invalid("no host: expected tcp://host:port"));
            }
            let tls_env = tls_verify.is_some_and(|v| !v.is_empty());
            let port = port.unwrap_or(if tls_env { TLS_PORT } else { 2375 });
            let addr = if host_part.contains(':') && !host_part.starts_with('[') {
                format!("[{host_part}]:{port}")
            } else {
                format!("{host_part}:{port}")
            };
            return Ok(Endpoint::Tcp {
                addr,
                tls: tls_env || port == TLS_PORT,
            });
        }
        if raw.starts_with("ssh://") {
            return Ok(Endpoint::Ssh(raw.to_string()));
        }
        Err(EndpointError::Unrecognised(raw.to_string()))
    }
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]`; `None` when the port is not a number.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp { addr, tls } => {
                write!(f, "tcp://{addr}{}", if *tls { " (TLS)" } else { "" })
            }
            Endpoint::Ssh(url) => f.write_str(url),
        }
    }
}
