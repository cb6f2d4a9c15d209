//! The plan the bring-up program hands PID 1, as data: what PID 1 then does
//! for the workspace's whole life (run the main command as whom, supervise
//! which dockerd, forward DNS where, wait for Docker or not, how long a stop
//! may take). Both programs are built from the same source, so the format
//! needs no versioning: `key=value` lines, values with every byte outside
//! printable ASCII (and `\`) written as `\xHH`, list items as repeated keys.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use crate::log::Level;
use crate::spawn::RunAs;

/// The environment variable naming the descriptor the bring-up program
/// writes the handover to (it is not inherited further).
pub const FD_ENV: &str = "WS_INIT_HANDOVER_FD";

/// The environment variable naming the descriptor `ws-init __supervise-docker`
/// writes its one-line [`Report`] to (`ws-init start-docker`'s waiting parent).
pub const REPORT_FD_ENV: &str = "WS_INIT_REPORT_FD";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// ws-init's own log lines from now on (the terminal rule applied).
    pub log_level: Level,
    pub log_json: bool,
    /// `WS_STOP_TIMEOUT`: the whole ordered stop.
    pub stop_timeout: Duration,
    /// Who the main command runs as; `None`: as ws-init runs.
    pub main_user: Option<RunAs>,
    pub wait: DockerWait,
    /// The inner dockerd to supervise, if one is started.
    pub dockerd: Option<Dockerd>,
    /// The inner DNS forwarder, if one runs.
    pub dns: Option<Dns>,
}

/// `WS_DOCKER_WAIT`: what holds the main command back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerWait {
    Off,
    /// Until the supervised dockerd's first start answers (or fails).
    Supervised,
    /// Until `ws-init-bringup wait-docker` says the host socket or remote
    /// engine answers.
    Poll,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerd {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added to (or replacing in) ws-init's own environment.
    pub env: Vec<(String, String)>,
    /// The unix socket readiness is checked on.
    pub socket: PathBuf,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    pub log_gid: u32,
    /// Rootless: rootlesskit and dockerd run as this user.
    pub run_as: Option<RunAs>,
    /// Its `--shutdown-timeout` (how long it gives inner containers after
    /// SIGTERM), when its command line sets one; `Duration::MAX`: forever.
    pub shutdown_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    pub listen: SocketAddr,
    pub upstreams: Vec<SocketAddr>,
    /// dockerd's arguments that name the forwarder: dropped when it cannot
    /// listen, so dockerd's defaults apply instead of a silent server.
    pub dockerd_args: Vec<String>,
}

/// Takes the descriptor the environment variable `name` names, and removes
/// the variable so that no child sees it. `None` when it is not set; else
/// the descriptor, close-on-exec from now on, or why the value is unusable.
/// Call while the process has one thread.
pub fn take_fd_from_env(name: &str) -> Option<Result<OwnedFd, String>> {
    let value = std::env::var_os(name)?;
    std::env::remove_var(name);
    Some(claim_fd(name, &value))
}

/// The descriptor `value` (of variable `name`) names: a number above 2 that
/// is open; made close-on-exec and owned from here on.
pub fn claim_fd(name: &str, value: &std::ffi::OsStr) -> Result<OwnedFd, String> {
    let fd: i32 = value
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|fd| *fd > 2)
        .ok_or_else(|| format!("{name}={value:?}: not a descriptor number above 2"))?;
    // SAFETY: F_SETFD on a number: fails with EBADF when it is not open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(format!(
            "{name}={value:?}: not an open descriptor ({})",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: open (checked above) and handed to this process alone; owned
    // from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A handover that cannot be read: a bug (both sides are one build).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unreadable handover from ws-init-bringup: {}", self.0)
    }
}

fn escape(out: &mut String, value: &[u8]) {
    for &b in value {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

fn unescape(value: &str) -> Result<Vec<u8>, DecodeError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hex = value
                .get(i + 2..i + 4)
                .filter(|_| bytes.get(i + 1) == Some(&b'x'))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| DecodeError(format!("bad escape in {value:?}")))?;
            out.push(hex);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

struct Writer(String);

impl Writer {
    fn put(&mut self, key: &str, value: impl AsRef<[u8]>) {
        self.0.push_str(key);
        self.0.push('=');
        escape(&mut self.0, value.as_ref());
        self.0.push('\n');
    }

    fn num(&mut self, key: &str, n: u128) {
        self.put(key, n.to_string());
    }

    fn user(&mut self, prefix: &str, u: &RunAs) {
        self.put(&format!("{prefix}.name"), &u.name);
        self.num(&format!("{prefix}.uid"), u.uid.into());
        self.num(&format!("{prefix}.gid"), u.gid.into());
        let groups: Vec<String> = u.groups.iter().map(u32::to_string).collect();
        self.put(&format!("{prefix}.groups"), groups.join(","));
        self.put(&format!("{prefix}.home"), &u.home);
        self.put(&format!("{prefix}.shell"), &u.shell);
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

impl Handover {
    pub fn encode(&self) -> String {
        let mut w = Writer(String::new());
        w.put("log_level", level_name(self.log_level));
        w.num("log_json", self.log_json.into());
        w.num("stop_timeout_ms", self.stop_timeout.as_millis());
        if let Some(u) = &self.main_user {
            w.user("main_user", u);
        }
        let wait = match self.wait {
            DockerWait::Off => "off",
            DockerWait::Supervised => "supervised",
            DockerWait::Poll => "poll",
        };
        w.put("wait", wait);
        if let Some(d) = &self.dockerd {
            w.put("dockerd.program", d.program.as_os_str().as_bytes());
            for a in &d.args {
                w.put("dockerd.arg", a);
            }
            for (k, v) in &d.env {
                w.put("dockerd.env", format!("{k}={v}"));
            }
            w.put("dockerd.socket", d.socket.as_os_str().as_bytes());
            w.put("dockerd.log_path", d.log_path.as_os_str().as_bytes());
            w.num("dockerd.log_max_bytes", d.log_max_bytes.into());
            w.num("dockerd.log_gid", d.log_gid.into());
            if let Some(u) = &d.run_as {
                w.user("dockerd.run_as", u);
            }
            match d.shutdown_timeout {
                Some(Duration::MAX) => w.put("dockerd.shutdown_timeout_ms", "forever"),
                Some(t) => w.num("dockerd.shutdown_timeout_ms", t.as_millis()),
                None => {}
            }
        }
        if let Some(dns) = &self.dns {
            w.put("dns.listen", dns.listen.to_string());
            for u in &dns.upstreams {
                w.put("dns.upstream", u.to_string());
            }
            for a in &dns.dockerd_args {
                w.put("dns.dockerd_arg", a);
            }
        }
        w.0
    }

    pub fn decode(text: &str) -> Result<Handover, DecodeError> {
        let mut fields: Vec<(&str, Vec<u8>)> = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| DecodeError(format!("line without '=': {line:?}")))?;
            fields.push((k, unescape(v)?));
        }
        let r = Reader(fields);
        let dockerd = if r.has("dockerd.program") {
            Some(Dockerd {
                program: r.path("dockerd.program")?,
                args: r.strings("dockerd.arg")?,
                env: r
                    .strings("dockerd.env")?
                    .into_iter()
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => Ok((k.to_string(), v.to_string())),
                        None => Err(DecodeError(format!("dockerd.env without '=': {kv:?}"))),
                    })
                    .collect::<Result<_, _>>()?,
                socket: r.path("dockerd.socket")?,
                log_path: r.path("dockerd.log_path")?,
                log_max_bytes: r.num("dockerd.log_max_bytes")?,
                log_gid: r.num("dockerd.log_gid")?,
                run_as: r.user("dockerd.run_as")?,
                shutdown_timeout: match r.has("dockerd.shutdown_timeout_ms") {
                    false => None,
                    true if r.string("dockerd.shutdown_timeout_ms")? == "forever" => {
                        Some(Duration::MAX)
                    }
                    true => Some(Duration::from_millis(r.num("dockerd.shutdown_timeout_ms")?)),
                },
            })
        } else {
            None
        };
        let dns = if r.has("dns.listen") {
            Some(Dns {
                listen: r.parsed("dns.listen")?,
                upstreams: r
                    .strings("dns.upstream")?
                    .iter()
                    .map(|s| {
                        s.parse()
                            .map_err(|_| DecodeError(format!("dns.upstream {s:?}")))
                    })
                    .collect::<Result<_, _>>()?,
                dockerd_args: r.strings("dns.dockerd_arg")?,
            })
        } else {
            None
        };
        Ok(Handover {
            log_level: match r.string("log_level")?.as_str() {
                "error" => Level::Error,
                "warn" => Level::Warn,
                "info" => Level::Info,
                "debug" => Level::Debug,
                "trace" => Level::Trace,
                other => return Err(DecodeError(format!("log_level {other:?}"))),
            },
            log_json: r.num::<u8>("log_json")? != 0,
            stop_timeout: Duration::from_millis(r.num("stop_timeout_ms")?),
            main_user: r.user("main_user")?,
            wait: match r.string("wait")?.as_str() {
                "off" => DockerWait::Off,
                "supervised" => DockerWait::Supervised,
                "poll" => DockerWait::Poll,
                other => return Err(DecodeError(format!("wait {other:?}"))),
            },
            dockerd,
            dns,
        })
    }
}

struct Reader<'a>(Vec<(&'a str, Vec<u8>)>);

impl Reader<'_> {
    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| *k == key)
    }

    fn all<'s>(&'s self, key: &str) -> impl Iterator<Item = &'s [u8]> + 's {
        let key = key.to_string();
        self.0
            .iter()
            .filter(move |(k, _)| *k == key)
            .map(|(_, v)| v.as_slice())
    }

    fn one(&self, key: &str) -> Result<&[u8], DecodeError> {
        self.all(key)
            .next()
            .ok_or_else(|| DecodeError(format!("no {key}")))
    }

    fn string(&self, key: &str) -> Result<String, DecodeError> {
        String::from_utf8(self.one(key)?.to_vec())
            .map_err(|_| DecodeError(format!("{key} is not UTF-8")))
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, DecodeError> {
        self.all(key)
            .map(|b| {
                String::from_utf8(b.to_vec())
                    .map_err(|_| DecodeError(format!("{key} is not UTF-8")))
            })
            .collect()
    }

    fn path(&self, key: &str) -> Result<PathBuf, DecodeError> {
        Ok(PathBuf::from(OsString::from_vec(self.one(key)?.to_vec())))
    }

    fn parsed<T: std::str::FromStr>(&self, key: &str) -> Result<T, DecodeError> {
        let s = self.string(key)?;
        s.parse()
            .map_err(|_| DecodeError(format!("{key}={s:?} does not parse")))
    }

    fn num<T: std::str::FromStr>(&self, key: &str) -> Result<T, DecodeError> {
        self.parsed(key)
    }

    fn user(&self, prefix: &str) -> Result<Option<RunAs>, DecodeError> {
        let key = |f: &str| format!("{prefix}.{f}");
        if !self.has(&key("name")) {
            return Ok(None);
        }
        let groups = self.string(&key("groups"))?;
        Ok(Some(RunAs {
            name: self.string(&key("name"))?,
            uid: self.num(&key("uid"))?,
            gid: self.num(&key("gid"))?,
            groups: groups
                .split(',')
                .filter(|g| !g.is_empty())
                .map(|g| {
                    g.parse()
                        .map_err(|_| DecodeError(format!("{prefix}.groups {groups:?}")))
                })
                .collect::<Result<_, _>>()?,
            home: self.string(&key("home"))?,
            shell: self.string(&key("shell"))?,
        }))
    }
}

/// What the Docker supervisor of `ws-init start-docker` tells the waiting
/// parent: one line over a pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// dockerd answers `/_ping`.
    Ready { pid: i32 },
    /// This mode starts no dockerd (host socket, remote engine): the parent
    /// checks the endpoint itself.
    NoDaemon { mode: String },
    /// Docker will not be available; why, and what to do.
    Failed { reason: String },
}

impl Report {
    /// One line, newline-free whatever the reason says.
    pub fn encode(&self) -> String {
        let line = match self {
            Report::Ready { pid } => format!("ready {pid}"),
            Report::NoDaemon { mode } => format!("no-daemon {mode}"),
            Report::Failed { reason } => format!("failed {reason}"),
        };
        format!("{}\n", line.replace('\n', " "))
    }

    pub fn decode(line: &str) -> Option<Report> {
        let (kind, rest) = line.trim_end_matches('\n').split_once(' ')?;
        match kind {
            "ready" => rest.parse().ok().map(|pid| Report::Ready { pid }),
            "no-daemon" => Some(Report::NoDaemon { mode: rest.into() }),
            "failed" => Some(Report::Failed {
                reason: rest.into(),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> RunAs {
        RunAs {
            name: name.into(),
            uid: 1000,
            gid: 1000,
            groups: vec![27, 1000],
            home: format!("/home/{name}"),
            shell: "/bin/bash".into(),
        }
    }

    fn full() -> Handover {
        Handover {
            log_level: Level::Debug,
            log_json: true,
            stop_timeout: Duration::from_millis(8500),
            main_user: Some(user("workspace")),
            wait: DockerWait::Supervised,
            dockerd: Some(Dockerd {
                program: PathBuf::from("/usr/sbin/dockerd"),
                args: vec![
                    "--group=docker".into(),
                    "--label=a b=c\nd\\e".into(),
                    "ünïcode".into(),
                ],
                env: vec![
                    ("PATH".into(), "/usr/sbin:/usr/bin".into()),
                    ("X".into(), "a=b".into()),
                ],
                socket: PathBuf::from("/var/run/docker.sock"),
                log_path: PathBuf::from(OsString::from_vec(b"/var/log/d\xffockerd.log".to_vec())),
                log_max_bytes: 10 << 20,
                log_gid: 2375,
                run_as: Some(user("dev")),
                shutdown_timeout: Some(Duration::MAX),
            }),
            dns: Some(Dns {
                listen: "172.17.0.2:53".parse().unwrap(),
                upstreams: vec![
                    "127.0.0.11:53".parse().unwrap(),
                    "[::1]:53".parse().unwrap(),
                ],
                dockerd_args: vec!["--dns=172.17.0.2".into()],
            }),
        }
    }

    #[test]
    fn a_handed_over_descriptor_is_claimed_close_on_exec() {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two-element array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), 0) }, 0);
        // SAFETY: the read end is ours to own.
        let _r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        let fd = claim_fd(FD_ENV, fds[1].to_string().as_ref()).unwrap();
        // SAFETY: F_GETFD on a descriptor this test owns.
        let flags = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        for bad in ["x", "-1", "2", ""] {
            let e = claim_fd(FD_ENV, bad.as_ref()).unwrap_err();
            assert!(e.contains("not a descriptor number above 2"), "{e}");
            assert!(e.starts_with(FD_ENV), "{e}");
        }
        drop(fd);
        let e = claim_fd(FD_ENV, fds[1].to_string().as_ref()).unwrap_err();
        assert!(e.contains("not an open descriptor"), "{e}");
    }

    #[test]
    fn everything_round_trips_including_odd_bytes() {
        let h = full();
        let text = h.encode();
        assert!(
            text.lines()
                .all(|l| l.bytes().all(|b| (0x20..0x7f).contains(&b))),
            "{text}"
        );
        assert_eq!(Handover::decode(&text).unwrap(), h);
    }

    #[test]
    fn the_minimal_handover_round_trips() {
        let h = Handover {
            log_level: Level::Info,
            log_json: false,
            stop_timeout: Duration::from_secs(10),
            main_user: None,
            wait: DockerWait::Off,
            dockerd: None,
            dns: None,
        };
        assert_eq!(Handover::decode(&h.encode()).unwrap(), h);
        let u = Handover {
            main_user: Some(RunAs {
                groups: vec![],
                ..user("root")
            }),
            ..h
        };
        assert_eq!(Handover::decode(&u.encode()).unwrap(), u);
    }

    #[test]
    fn damage_is_an_error_not_a_guess() {
        let text = full().encode();
        for bad in [
            text.replace("wait=supervised", "wait=sometimes"),
            text.replace("log_level=debug\n", ""),
            text.replace("dockerd.log_gid=2375", "dockerd.log_gid=-1"),
            text.replace("\\xff", "\\xZZ"),
            format!("{text}garbage\n"),
        ] {
            assert!(Handover::decode(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn report_lines_round_trip() {
        for r in [
            Report::Ready { pid: 42 },
            Report::NoDaemon {
                mode: "host-socket".into(),
            },
            Report::Failed {
                reason: "it cannot work: no privilege".into(),
            },
        ] {
            let line = r.encode();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            assert_eq!(Report::decode(&line), Some(r));
        }
        let multi = Report::Failed {
            reason: "one\ntwo".into(),
        };
        assert_eq!(
            Report::decode(&multi.encode()),
            Some(Report::Failed {
                reason: "one two".into()
            })
        );
        assert_eq!(Report::decode("ready x\n"), None);
        assert_eq!(Report::decode("bogus 1\n"), None);
        assert_eq!(Report::decode(""), None);
    }
}
