//! Environment → typed settings, with every validation in one place.
//!
//! `Settings::from_vars` is pure (it takes the variables as a list), so the
//! whole table of accepted and refused values is unit-tested without touching
//! the process environment. A bad value is refused before anything starts,
//! with a message naming the variable, the value and what is accepted.

pub mod docker_host;
pub mod dockerd_args;

pub use docker_host::DockerHost;
pub use dockerd_args::DockerdArgs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Default GID of the `docker` group (design §1).
pub const DEFAULT_DOCKER_GID: u32 = 999;
pub use ws_init_core::stop_budget::{DEFAULT_STOP_TIMEOUT, MIN_STOP_TIMEOUT};
pub const DEFAULT_DOCKERD_LOG: &str = "/var/log/dockerd.log";
/// Size at which the dockerd log is rotated (one old generation kept).
pub const DEFAULT_DOCKERD_LOG_MAX: u64 = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {var}={value:?}: {accepted}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub accepted: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<ws_init_core::log::Level> for LogLevel {
    fn from(l: ws_init_core::log::Level) -> LogLevel {
        use ws_init_core::log::Level;
        match l {
            Level::Error => LogLevel::Error,
            Level::Warn => LogLevel::Warn,
            Level::Info => LogLevel::Info,
            Level::Debug => LogLevel::Debug,
            Level::Trace => LogLevel::Trace,
        }
    }
}

impl From<LogLevel> for ws_init_core::log::Level {
    fn from(l: LogLevel) -> ws_init_core::log::Level {
        use ws_init_core::log::Level;
        match l {
            LogLevel::Error => Level::Error,
            LogLevel::Warn => Level::Warn,
            LogLevel::Info => Level::Info,
            LogLevel::Debug => Level::Debug,
            LogLevel::Trace => Level::Trace,
        }
    }
}

/// What `DOCKER_TLS_CERTDIR` asks for, with the upstream meaning.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "dir", rename_all = "snake_case")]
pub enum TlsSetting {
    /// Unset: unix socket only (our default, design §4).
    Off,
    /// Set but empty: upstream listens on tcp 2375 without TLS.
    PlainTcp,
    /// Set: certificates under this directory, tcp 2376 with --tlsverify.
    CertDir(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Settings {
    /// `WS_DOCKER_ENABLE_CLIENT`: do any Docker work at all.
    pub docker_enable_client: bool,
    /// `WS_USER`: user for the main command; `None` = `workspace` if it exists, else root.
    pub user: Option<String>,
    /// `WS_DOCKER_GID`: GID of the `docker` group.
    pub docker_gid: u32,
    /// `WS_DOCKER_WAIT`: start the main command only once Docker answers.
    pub docker_wait: bool,
    /// `WS_DOCKERD_ARGS`: extra dockerd flags, split like a shell would (quotes honoured).
    pub dockerd_args: DockerdArgs,
    /// `WS_STOP_TIMEOUT`: seconds the whole shutdown may take before SIGKILL.
    pub stop_timeout: Duration,
    /// `WS_LOG_LEVEL`.
    pub log_level: LogLevel,
    /// `WS_LOG_LEVEL` was given (non-empty): on a terminal, too.
    pub log_level_set: bool,
    /// `WS_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `WS_DOCKERD_LOG`: dockerd's log file.
    pub dockerd_log: PathBuf,
    /// `DOCKER_HOST`, when set and non-empty.
    pub docker_host: Option<DockerHost>,
    /// `DOCKER_TLS_CERTDIR`.
    pub tls: TlsSetting,
    /// `DOCKER_TLS_VERIFY` set and non-empty: a tcp DOCKER_HOST speaks TLS (the docker CLI's meaning).
    pub docker_tls_verify: bool,
    /// `DOCKER_TLS_SAN`: extra SANs, each with its own `DNS:`/`IP:` prefix.
    pub tls_san: Vec<String>,
    /// `DOCKER_IPTABLES_LEGACY`: `None` unset (auto), `Some(true)` non-empty, `Some(false)` empty.
    pub iptables_legacy: Option<bool>,
    /// `WS_DOCKER_ROOTLESS`: the inner dockerd runs as the workspace user through rootlesskit.
    pub docker_rootless: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            docker_enable_client: false,
            user: None,
            docker_gid: DEFAULT_DOCKER_GID,
            docker_wait: false,
            dockerd_args: DockerdArgs::default(),
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            log_level: LogLevel::Info,
            log_level_set: false,
            log_format: LogFormat::Text,
            dockerd_log: PathBuf::from(DEFAULT_DOCKERD_LOG),
            docker_host: None,
            tls: TlsSetting::Off,
            docker_tls_verify: false,
            tls_san: Vec::new(),
            iptables_legacy: None,
            docker_rootless: false,
        }
    }
}

/// One `DOCKER_TLS_SAN` entry: `DNS:<name>` or `IP:<address>` (the prefix
/// in any case). The certificate code (`tls`) turns it into its SAN type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Ip(std::net::IpAddr),
}

/// Parse a SAN entry; `None` when it is not `DNS:<ASCII name>` or `IP:<address>`.
pub fn parse_san(entry: &str) -> Option<San> {
    let (kind, value) = entry.split_once(':')?;
    if value.is_empty() {
        return None;
    }
    match kind.to_ascii_uppercase().as_str() {
        // A certificate's DNS name is an IA5String: ASCII only.
        "DNS" => value.is_ascii().then(|| San::Dns(value.to_string())),
        "IP" => value.parse().ok().map(San::Ip),
        _ => None,
    }
}

const BOOL_ACCEPTED: &str = "expected one of 1/true/yes/on or 0/false/no/off (or empty)";

fn err(var: &'static str, value: &str, accepted: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        value: value.to_string(),
        accepted: accepted.into(),
    }
}

/// The boolean grammar of design §4 (case-insensitive, surrounding blanks ignored).
pub fn parse_bool(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(err(var, value, BOOL_ACCEPTED)),
    }
}

fn parse_u32(var: &'static str, value: &str, max: u32) -> Result<u32, ConfigError> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|v| *v <= max)
        .ok_or_else(|| {
            err(
                var,
                value,
                format!("expected a whole number from 0 to {max}"),
            )
        })
}

/// Seconds, integer or decimal, not negative, at most a day.
fn parse_seconds(var: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let accepted = "expected a number of seconds from 0 to 86400 (for example 8 or 2.5)";
    let secs: f64 = value
        .trim()
        .parse()
        .map_err(|_| err(var, value, accepted))?;
    if !secs.is_finite() || !(0.0..=86400.0).contains(&secs) {
        return Err(err(var, value, accepted));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Split a flag string the way a POSIX shell splits words: blanks separate,
/// single quotes are literal, double quotes allow `\"` and `\\`, a backslash
/// outside quotes escapes the next character. No expansion of any kind.
pub fn split_words(var: &'static str, input: &str) -> Result<Vec<String>, ConfigError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(err(var, input, "unterminated single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(err(var, input, "unterminated double quote")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(err(var, input, "unterminated double quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err(err(var, input, "trailing backslash")),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

impl Settings {
    /// Read the real process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        // Non-UTF-8 values are kept lossily so the error message can still show them.
        Self::from_vars(std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        }))
    }

    /// Pure: build settings from a list of variables.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let env: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let get = |k: &str| env.get(k).map(String::as_str);
        let mut s = Settings::default();

        if let Some(v) = get("WS_DOCKER_ENABLE_CLIENT") {
            s.docker_enable_client = parse_bool("WS_DOCKER_ENABLE_CLIENT", v)?;
        }
        if let Some(v) = get("WS_USER") {
            let v = v.trim();
            if v.contains(':') || v.contains(char::is_whitespace) {
                return Err(err(
                    "WS_USER",
                    v,
                    "expected a user name or a numeric uid from /etc/passwd",
                ));
            }
            if !v.is_empty() {
                s.user = Some(v.to_string());
            }
        }
        if let Some(v) = get("WS_DOCKER_GID") {
            // 0 is root's group and 65534 nogroup: neither may become `docker`.
            let gid = parse_u32("WS_DOCKER_GID", v, u32::MAX - 1)?;
            if gid == 0 || gid == 65534 {
                return Err(err(
                    "WS_DOCKER_GID",
                    v,
                    "expected a group id other than 0 (root) and 65534 (nogroup), for example 999",
                ));
            }
            s.docker_gid = gid;
        }
        if let Some(v) = get("WS_DOCKER_ROOTLESS") {
            s.docker_rootless = parse_bool("WS_DOCKER_ROOTLESS", v)?;
        }
        if let Some(v) = get("WS_DOCKER_WAIT") {
            s.docker_wait = parse_bool("WS_DOCKER_WAIT", v)?;
        }
        if let Some(v) = get("WS_DOCKERD_ARGS") {
            let words = split_words("WS_DOCKERD_ARGS", v)?;
            // Values may follow a flag, but the list must start with one:
            // `dockerd --debug` here would pass "dockerd" as a stray argument.
            if words.first().is_some_and(|a| !a.starts_with('-')) {
                return Err(err(
                    "WS_DOCKERD_ARGS",
                    v,
                    "expected dockerd flags only (starting with -), for example \"--debug --mtu 1400\"",
                ));
            }
            s.dockerd_args = words.into();
        }
        if let Some(v) = get("WS_STOP_TIMEOUT") {
            s.stop_timeout = parse_seconds("WS_STOP_TIMEOUT", v)?;
            if s.stop_timeout < MIN_STOP_TIMEOUT {
                return Err(err(
                    "WS_STOP_TIMEOUT",
                    v,
                    "expected at least 2 seconds (the ordered stop of the main command, dockerd and the rest needs them), for example 8",
                ));
            }
        }
        if let Some(v) = get("WS_LOG_LEVEL") {
            s.log_level_set = !v.trim().is_empty();
            s.log_level = match ws_init_core::log::Level::from_name(v) {
                Some(level) => level.into(),
                None => {
                    return Err(err(
                        "WS_LOG_LEVEL",
                        v,
                        "expected one of error, warn, info, debug, trace",
                    ))
                }
            };
        }
        if let Some(v) = get("WS_LOG_FORMAT") {
            s.log_format = match v.trim().to_ascii_lowercase().as_str() {
                "" | "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(err("WS_LOG_FORMAT", v, "expected text or json")),
            };
        }
        if let Some(v) = get("WS_DOCKERD_LOG") {
            if !v.starts_with('/') || v.ends_with('/') || v.ends_with("/.") || v.ends_with("/..") {
                return Err(err("WS_DOCKERD_LOG", v, "expected an absolute file path"));
            }
            s.dockerd_log = PathBuf::from(v);
        }
        if let Some(v) = get("DOCKER_TLS_CERTDIR") {
            s.tls = if v.is_empty() {
                TlsSetting::PlainTcp
            } else if v.starts_with('/') {
                TlsSetting::CertDir(PathBuf::from(v))
            } else {
                return Err(err(
                    "DOCKER_TLS_CERTDIR",
                    v,
                    "expected an absolute directory such as /certs (empty: plain tcp 2375, unset: unix socket only)",
                ));
            };
        }
        s.docker_tls_verify = get("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
        if let Some(v) = get("DOCKER_HOST") {
            let v = v.trim();
            if !v.is_empty() {
                use docker_host::EndpointError;
                // The parser every later reader uses: a bad port is refused
                // now, not after start.
                s.docker_host = Some(DockerHost::parse(v, s.docker_tls_verify).map_err(
                    |e| match e {
                        EndpointError::Invalid(_, why) => err("DOCKER_HOST", v, why),
                        EndpointError::Unrecognised(_) => err(
                            "DOCKER_HOST",
                            v,
                            "expected unix:///path, tcp://host:port or ssh://user@host",
                        ),
                    },
                )?);
            }
        }
        if let Some(v) = get("DOCKER_TLS_SAN") {
            s.tls_san = v.split_whitespace().map(str::to_string).collect();
            if let Some(bad) = s.tls_san.iter().find(|x| {
                !(x.starts_with("DNS:") || x.starts_with("IP:")) || parse_san(x).is_none()
            }) {
                return Err(err(
                    "DOCKER_TLS_SAN",
                    bad,
                    "expected whitespace-separated entries, each DNS:<host name> or IP:<IPv4 or IPv6 address> (for example \"DNS:docker.example IP:10.0.0.5\")",
                ));
            }
        }
        if let Some(v) = get("DOCKER_IPTABLES_LEGACY") {
            // Upstream: set (even empty) decides; non-empty means legacy.
            s.iptables_legacy = Some(!v.is_empty());
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let s = parse(&[]).unwrap();
        assert_eq!(s, Settings::default());
        assert!(!s.docker_enable_client);
        assert_eq!(s.docker_gid, 999);
        assert_eq!(s.tls, TlsSetting::Off);
        assert_eq!(s.iptables_legacy, None);
    }

    #[test]
    fn booleans_accept_the_documented_words_in_any_case() {
        for v in ["1", "true", "YES", "On", " true "] {
            assert!(
                parse(&[("WS_DOCKER_ENABLE_CLIENT", v)])
                    .unwrap()
                    .docker_enable_client,
                "{v}"
            );
        }
        for v in ["0", "false", "No", "OFF", ""] {
            assert!(
                !parse(&[("WS_DOCKER_ENABLE_CLIENT", v)])
                    .unwrap()
                    .docker_enable_client,
                "{v}"
            );
        }
    }

    #[test]
    fn bad_boolean_names_variable_value_and_accepted_words() {
        let e = parse(&[("WS_DOCKER_ENABLE_CLIENT", "banana")]).unwrap_err();
        assert_eq!(e.var, "WS_DOCKER_ENABLE_CLIENT");
        let msg = e.to_string();
        assert!(
            msg.contains("WS_DOCKER_ENABLE_CLIENT")
                && msg.contains("banana")
                && msg.contains("1/true/yes/on"),
            "{msg}"
        );
        assert!(parse(&[("WS_DOCKER_WAIT", "2")]).is_err());
        assert!(parse(&[("WS_DOCKER_ROOTLESS", "maybe")]).is_err());
        assert!(
            parse(&[("WS_DOCKER_ROOTLESS", "1")])
                .unwrap()
                .docker_rootless
        );
        assert!(!parse(&[]).unwrap().docker_rootless);
    }

    #[test]
    fn stop_timeout_accepts_seconds_and_refuses_negative_or_junk() {
        assert_eq!(
            parse(&[("WS_STOP_TIMEOUT", "3")]).unwrap().stop_timeout,
            Duration::from_secs(3)
        );
        assert_eq!(
            parse(&[("WS_STOP_TIMEOUT", "2.5")]).unwrap().stop_timeout,
            Duration::from_millis(2500)
        );
        assert_eq!(
            parse(&[("WS_STOP_TIMEOUT", "2")]).unwrap().stop_timeout,
            MIN_STOP_TIMEOUT
        );
        for short in ["0", "0.4", "1.99"] {
            let e = parse(&[("WS_STOP_TIMEOUT", short)]).unwrap_err();
            assert_eq!(e.var, "WS_STOP_TIMEOUT", "{short}");
            assert!(e.to_string().contains("at least 2 seconds"), "{e}");
        }
        for bad in ["-3", "abc", "", "1e9", "NaN", "inf"] {
            let e = parse(&[("WS_STOP_TIMEOUT", bad)]).unwrap_err();
            assert_eq!(e.var, "WS_STOP_TIMEOUT", "{bad}");
            assert!(e.to_string().contains("seconds"));
        }
    }

    #[test]
    fn docker_gid_must_be_a_usable_group_number() {
        assert_eq!(
            parse(&[("WS_DOCKER_GID", "2375")]).unwrap().docker_gid,
            2375
        );
        for bad in ["0", "65534", "-1", "docker", "4294967295", ""] {
            assert!(parse(&[("WS_DOCKER_GID", bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn dockerd_args_are_split_like_a_shell() {
        let s = parse(&[(
            "WS_DOCKERD_ARGS",
            r#"--debug --label "a b" --label='c d' --x=e\ f"#,
        )])
        .unwrap();
        assert_eq!(
            s.dockerd_args.words(),
            ["--debug", "--label", "a b", "--label=c d", "--x=e f"]
        );
        assert!(parse(&[("WS_DOCKERD_ARGS", "--label 'open")]).is_err());
        assert!(parse(&[("WS_DOCKERD_ARGS", "dockerd --debug")]).is_err());
        assert!(parse(&[("WS_DOCKERD_ARGS", "")])
            .unwrap()
            .dockerd_args
            .words()
            .is_empty());
    }

    #[test]
    fn tls_certdir_follows_upstream_meaning() {
        assert_eq!(
            parse(&[("DOCKER_TLS_CERTDIR", "/certs")]).unwrap().tls,
            TlsSetting::CertDir("/certs".into())
        );
        assert_eq!(
            parse(&[("DOCKER_TLS_CERTDIR", "")]).unwrap().tls,
            TlsSetting::PlainTcp
        );
        assert!(parse(&[("DOCKER_TLS_CERTDIR", "certs")]).is_err());
    }

    #[test]
    fn tls_san_needs_prefixes() {
        let s = parse(&[("DOCKER_TLS_SAN", " DNS:a.example  IP:10.1.2.3 ")]).unwrap();
        assert_eq!(s.tls_san, ["DNS:a.example", "IP:10.1.2.3"]);
        let e = parse(&[("DOCKER_TLS_SAN", "DNS:ok bare.example")]).unwrap_err();
        assert_eq!(e.value, "bare.example");
        // Checked at start as the certificate will need them.
        for bad in [
            "IP:999.1.1.1",
            "IP:",
            "DNS:",
            "IP:10.0.0.5/24",
            "DNS:ok IP:1.2.3",
            "DNS:bücher.example",
        ] {
            let e = parse(&[("DOCKER_TLS_SAN", bad)]).unwrap_err();
            assert_eq!(e.var, "DOCKER_TLS_SAN", "{bad}");
            assert!(e.to_string().contains("IP:<IPv4 or IPv6 address>"), "{e}");
        }
        assert!(parse(&[("DOCKER_TLS_SAN", "IP:::1 IP:10.0.0.5 DNS:a-b.c")]).is_ok());
    }

    #[test]
    fn iptables_legacy_set_even_empty_decides() {
        assert_eq!(
            parse(&[("DOCKER_IPTABLES_LEGACY", "1")])
                .unwrap()
                .iptables_legacy,
            Some(true)
        );
        assert_eq!(
            parse(&[("DOCKER_IPTABLES_LEGACY", "")])
                .unwrap()
                .iptables_legacy,
            Some(false)
        );
    }

    #[test]
    fn docker_host_schemes() {
        assert_eq!(
            parse(&[("DOCKER_HOST", "tcp://h:2375")])
                .unwrap()
                .docker_host
                .map(|h| (h.value, h.endpoint)),
            Some((
                "tcp://h:2375".to_string(),
                Some(docker_host::Endpoint::Tcp {
                    addr: "h:2375".into(),
                    tls: false
                })
            ))
        );
        assert_eq!(parse(&[("DOCKER_HOST", "")]).unwrap().docker_host, None);
        // Parsed once, DOCKER_TLS_VERIFY included: later readers see TLS.
        let tls = parse(&[("DOCKER_HOST", "tcp://h"), ("DOCKER_TLS_VERIFY", "1")]).unwrap();
        assert_eq!(
            tls.docker_host.unwrap().endpoint,
            Some(docker_host::Endpoint::Tcp {
                addr: "h:2376".into(),
                tls: true
            })
        );
        // Accepted for the docker CLI; nothing ws-init connects to.
        let fd = parse(&[("DOCKER_HOST", "fd://")])
            .unwrap()
            .docker_host
            .unwrap();
        assert_eq!(fd.endpoint, None);
        assert!(fd.connectable().unwrap_err().to_string().contains("fd://"));
        assert!(parse(&[("DOCKER_HOST", "h:2375")]).is_err());
        for bad in ["tcp://h:notaport", "tcp://", "unix://relative.sock"] {
            assert_eq!(
                parse(&[("DOCKER_HOST", bad)]).unwrap_err().var,
                "DOCKER_HOST",
                "{bad}"
            );
        }
    }

    #[test]
    fn dockerd_log_must_name_a_file() {
        for bad in ["log", "/var/log/", "/var/log/.", "/"] {
            assert_eq!(
                parse(&[("WS_DOCKERD_LOG", bad)]).unwrap_err().var,
                "WS_DOCKERD_LOG"
            );
        }
    }

    #[test]
    fn log_settings() {
        let s = parse(&[("WS_LOG_LEVEL", "DEBUG"), ("WS_LOG_FORMAT", "json")]).unwrap();
        assert_eq!(
            (s.log_level, s.log_format),
            (LogLevel::Debug, LogFormat::Json)
        );
        assert!(s.log_level_set);
        assert!(!parse(&[]).unwrap().log_level_set);
        assert!(!parse(&[("WS_LOG_LEVEL", "")]).unwrap().log_level_set);
        assert!(parse(&[("WS_LOG_LEVEL", "info")]).unwrap().log_level_set);
        assert!(parse(&[("WS_LOG_LEVEL", "loud")]).is_err());
        assert!(parse(&[("WS_LOG_FORMAT", "xml")]).is_err());
    }

    #[test]
    fn user_name_validation() {
        assert_eq!(
            parse(&[("WS_USER", "dev")]).unwrap().user.as_deref(),
            Some("dev")
        );
        assert_eq!(parse(&[("WS_USER", "")]).unwrap().user, None);
        assert!(parse(&[("WS_USER", "a:b")]).is_err());
    }
}
