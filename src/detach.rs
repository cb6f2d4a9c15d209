//! `ws-init start-docker [--timeout SECS]`: Docker for containers whose PID 1 is
//! not ws-init, such as a Dev Container Feature's `entrypoint` (the Dev
//! Containers CLI runs it with no arguments inside
//! `sh -c '…; ENTRYPOINT; exec "$@"'`, so it must return while the container's
//! command becomes PID 1).
//!
//! It forks a supervisor and waits, at most `--timeout`, for its one-line
//! report over a pipe. The supervisor becomes a session leader and a child
//! subreaper, prepares and starts dockerd exactly as ws-init as PID 1 does
//! (`bringup` and `app::start_docker`: same probe, plan, steps, supervisor,
//! restarts with backoff), reaps its own subtree, and on SIGTERM or SIGINT stops
//! dockerd in order and exits. The parent returns 0 once `/_ping` answers, so
//! whatever runs next can use `docker` at once.
//!
//! One supervisor per container: it holds an exclusive `flock` on
//! [`PID_FILE`] (which holds its pid), so a second `start-docker` only waits
//! for the Docker the first one started. The lock dies with the process, so a
//! file left by a container restart is no obstacle.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use tracing::{error, info, warn};

use crate::app::{self, StopDeadlines};
use crate::bringup;
use crate::config::Settings;
use crate::dockerd::State;
use crate::exit::EXIT_USAGE;
use crate::pid1::signals::{self, SignalFd};
use crate::pid1::{self, Reaper};
use crate::plan::DockerMode;

/// The supervisor's lock and pid file: `kill -TERM $(cat /run/ws-init-docker.pid)`
/// stops dockerd cleanly.
pub const PID_FILE: &str = "/run/ws-init-docker.pid";

/// What the supervisor tells the waiting parent: one line over a pipe.
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

/// The outcome of trying to become the container's one supervisor.
#[derive(Debug)]
pub enum Lock {
    /// We hold the lock: pass the file to the supervisor (never unlock it).
    Taken(File),
    /// Another live process holds it; its pid as written in the file.
    Held(Option<i32>),
}

/// Takes the exclusive lock on `path` without waiting. The file is opened
/// close-on-exec (dockerd must not inherit it) and never through a link.
pub fn take_lock(path: &Path) -> std::io::Result<Lock> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Lock::Taken(file));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(err);
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(Lock::Held(text.trim().parse().ok()))
}

/// Writes `pid` into the locked file, replacing what a former run left.
fn write_pid(file: &mut File, pid: u32) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(format!("{pid}\n").as_bytes())
}

/// `ws-init start-docker`: returns 0 once Docker answers, 1 when it does not
/// within `timeout` (the supervisor keeps trying) or cannot work here.
pub fn start_docker(settings: Settings, timeout: Duration) -> i32 {
    if !settings.docker_enable_client {
        eprintln!("ws-init: WS_DOCKER_ENABLE_CLIENT is off: there is no Docker to start");
        return 0;
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "ws-init start-docker: needs root (running as uid {}): it mounts, edits /etc/group and starts dockerd. \
             Run it as root (a Feature's entrypoint runs as the container's user: leave containerUser unset or root)",
            nix::unistd::Uid::effective()
        );
        return EXIT_USAGE;
    }
    let lock = match take_lock(Path::new(PID_FILE)) {
        Ok(Lock::Taken(file)) => file,
        Ok(Lock::Held(pid)) => {
            let who = pid.map_or("another process".to_string(), |p| format!("pid {p}"));
            eprintln!("ws-init: Docker is already supervised by {who}; waiting for it to answer");
            return app::wait_docker(&settings, timeout);
        }
        Err(e) => {
            eprintln!("ws-init: cannot open or lock {PID_FILE}: {e}");
            return 1;
        }
    };
    let (read_end, write_end) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ws-init: cannot create a pipe: {e}");
            return 1;
        }
    };
    let started = Instant::now();
    // SAFETY: no runtime and no other thread exist yet: the child may run anything.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(read_end);
            let code = supervisor(settings, lock, File::from(write_end));
            std::process::exit(code);
        }
        Ok(ForkResult::Parent { child }) => {
            drop(write_end);
            // Closing our descriptor keeps the lock: the child shares it.
            drop(lock);
            wait_for_report(&settings, read_end, child, started, timeout)
        }
        Err(e) => {
            eprintln!("ws-init: cannot fork the Docker supervisor: {e}");
            1
        }
    }
}

/// The parent: waits for the supervisor's report, bounded by `timeout`.
fn wait_for_report(
    settings: &Settings,
    pipe: OwnedFd,
    child: Pid,
    started: Instant,
    timeout: Duration,
) -> i32 {
    let deadline = started + timeout;
    match read_report(pipe, deadline) {
        ReadOutcome::Line(line) => match Report::decode(&line) {
            Some(Report::Ready { pid }) => {
                eprintln!(
                    "ws-init: Docker answers after {} ms (dockerd pid {pid}, supervised by pid {child}; \
                     `kill -TERM $(cat {PID_FILE})` stops it cleanly)",
                    started.elapsed().as_millis()
                );
                0
            }
            Some(Report::NoDaemon { mode }) => {
                let left = deadline.saturating_duration_since(Instant::now());
                eprintln!("ws-init: Docker mode {mode}: no dockerd to start; checking the engine");
                app::wait_docker(settings, left)
            }
            Some(Report::Failed { reason }) => {
                eprintln!("ws-init: Docker is not available: {reason}");
                1
            }
            None => {
                eprintln!("ws-init: the Docker supervisor sent an unreadable report {line:?}");
                1
            }
        },
        ReadOutcome::Closed => {
            let how = match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
                Ok(WaitStatus::Signaled(_, sig, _)) => format!("was killed by {}", sig.as_str()),
                _ => "closed its report pipe".to_string(),
            };
            eprintln!(
                "ws-init: the Docker supervisor (pid {child}) {how} before Docker answered; see the lines above"
            );
            1
        }
        ReadOutcome::TimedOut => {
            eprintln!(
                "ws-init: Docker did not answer within {} s; dockerd keeps starting under its supervisor \
                 (pid {child}); see {} and `ws-init doctor`",
                timeout.as_secs_f64(),
                settings.dockerd_log.display()
            );
            1
        }
        ReadOutcome::Error(e) => {
            eprintln!("ws-init: cannot read the Docker supervisor's report: {e}");
            1
        }
    }
}

enum ReadOutcome {
    Line(String),
    Closed,
    TimedOut,
    Error(std::io::Error),
}

/// Reads one line from `pipe` until `deadline`.
fn read_report(pipe: OwnedFd, deadline: Instant) -> ReadOutcome {
    let mut file = File::from(pipe);
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return ReadOutcome::TimedOut;
        }
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            0 => return ReadOutcome::TimedOut,
            n if n > 0 => {}
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return ReadOutcome::Error(e);
            }
        }
        let mut chunk = [0u8; 512];
        match file.read(&mut chunk) {
            Ok(0) => {
                return match String::from_utf8(buf) {
                    Ok(s) if !s.is_empty() => ReadOutcome::Line(s),
                    _ => ReadOutcome::Closed,
                }
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&b'\n') {
                    return ReadOutcome::Line(String::from_utf8_lossy(&buf).into_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return ReadOutcome::Error(e),
        }
    }
}

/// The forked supervisor: detaches, then runs until SIGTERM/SIGINT.
fn supervisor(settings: Settings, mut lock: File, report: File) -> i32 {
    // Its own session: signals to the caller's process group (a shell's
    // job control, the entrypoint's `sh`) do not reach it.
    if let Err(e) = nix::unistd::setsid() {
        warn!("setsid failed ({e}); the supervisor stays in the caller's session");
    }
    if let Err(e) = pid1::become_subreaper_if_needed() {
        warn!(
            "cannot become child subreaper ({e}); orphans of dockerd's subtree are reaped by PID 1"
        );
    }
    // Like ws-init as PID 1: pin no mount.
    let _ = std::env::set_current_dir("/");
    detach_stdio();
    if let Err(e) = write_pid(&mut lock, std::process::id()) {
        warn!("cannot write {PID_FILE}: {e}");
    }
    // As PID 1 mode: every catchable signal is blocked and read from a
    // signalfd (while this process still has one thread), SIGCHLD reaps.
    if let Err(e) = signals::block_all() {
        warn!("cannot block signals to read them from a signalfd ({e})");
    }
    let Some(rt) = app::runtime() else { return 1 };
    let local = tokio::task::LocalSet::new();
    let code = local.block_on(&rt, supervise(settings, report));
    // The lock is released when this process ends, not before.
    drop(lock);
    code
}

/// stdin from /dev/null; stdout and stderr to the container's log (PID 1's),
/// so that a `docker exec` that ran `start-docker` is not held open by the
/// supervisor keeping its pipes. Left as they are when that cannot be opened.
fn detach_stdio() {
    let redirect = |target: i32, path: &str, write: bool| {
        let file = std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open(path);
        if let Ok(f) = file {
            // SAFETY: dup2 onto a standard descriptor; `f` is closed afterwards.
            unsafe { libc::dup2(f.as_raw_fd(), target) };
        }
    };
    redirect(0, "/dev/null", false);
    redirect(1, "/proc/1/fd/1", true);
    redirect(2, "/proc/1/fd/2", true);
}

fn send(report: &mut Option<File>, r: &Report) {
    if let Some(mut f) = report.take() {
        // The parent may be gone (it timed out): nothing to tell then.
        let _ = f.write_all(r.encode().as_bytes());
    }
}

/// The supervisor's life: bring Docker up as PID 1 mode does, report, then
/// supervise until asked to stop.
async fn supervise(settings: Settings, report: File) -> i32 {
    let mut report = Some(report);
    let sigfd = match SignalFd::open() {
        Ok(fd) => fd,
        Err(e) => {
            let reason = format!("cannot open a signalfd to receive signals: {e}");
            send(&mut report, &Report::Failed { reason });
            return 1;
        }
    };
    let (reaper, mut inbox) = Reaper::start_with_signals(sigfd);
    info!(
        pid = std::process::id(),
        "Docker supervisor started (ws-init start-docker)"
    );
    let (probe, plan) = bringup::probe_and_plan(&settings);
    let prepared = bringup::apply(probe, plan);
    let Some(dockerd) = app::start_docker(&reaper, &prepared, &settings) else {
        let r = no_dockerd_report(&prepared);
        send(&mut report, &r);
        return if matches!(r, Report::Failed { .. }) {
            1
        } else {
            0
        };
    };

    let mut state = dockerd.state();
    let ready = dockerd.ready();
    tokio::pin!(ready);
    let code = loop {
        tokio::select! {
            r = &mut ready, if report.is_some() => match r {
                Ok(pid) => send(&mut report, &Report::Ready { pid }),
                Err(e) => {
                    send(&mut report, &Report::Failed { reason: e.to_string() });
                    break 1;
                }
            },
            changed = state.changed() => {
                if changed.is_err() {
                    break 1;
                }
                let now = state.borrow().clone();
                if let State::Failed { reason } = now {
                    error!("dockerd cannot be started any more: {reason}");
                    send(&mut report, &Report::Failed { reason });
                    break 1;
                }
            }
            sig = inbox.recv() => {
                if matches!(sig.signo, libc::SIGTERM | libc::SIGINT) {
                    info!("{} received: stopping dockerd", signals::name(sig.signo));
                    break 0;
                }
                tracing::debug!("{} ignored by the Docker supervisor", signals::name(sig.signo));
            }
        }
    };
    let deadlines = StopDeadlines::from(tokio::time::Instant::now(), settings.stop_timeout);
    app::stop_everything(&reaper, Some(&dockerd), &deadlines).await;
    code
}

/// Why no dockerd was started, as the parent is told.
fn no_dockerd_report(prepared: &bringup::Prepared) -> Report {
    match &prepared.plan.mode {
        DockerMode::Impossible {
            reasons,
            suggestions,
        } => Report::Failed {
            reason: format!(
                "it cannot work in this container: {}. Ways that work: {}",
                reasons.join("; "),
                suggestions.join(" | ")
            ),
        },
        mode if !mode.starts_dockerd() => Report::NoDaemon {
            mode: mode.name().into(),
        },
        _ => Report::Failed {
            reason: "a required preparation step failed (see the lines above), so dockerd was not started"
                .into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn one_lock_holder_and_its_pid_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ws-init-docker.pid");
        let Lock::Taken(mut first) = take_lock(&path).unwrap() else {
            panic!("the first take must get the lock");
        };
        write_pid(&mut first, 4242).unwrap();
        match take_lock(&path).unwrap() {
            Lock::Held(pid) => assert_eq!(pid, Some(4242)),
            Lock::Taken(_) => panic!("a second open took the lock the first holds"),
        }
        // The lock ends with its holder: a file left behind is no obstacle.
        drop(first);
        assert!(matches!(take_lock(&path).unwrap(), Lock::Taken(_)));
    }

    #[test]
    fn lock_never_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(take_lock(&link).is_err());
    }

    #[test]
    fn no_dockerd_reasons() {
        use crate::plan::{tests as fixtures, Plan, RemoteKind};
        let prepared = |mode| bringup::Prepared {
            probe: fixtures::probe("docker-plain", &fixtures::enabled()),
            plan: Plan {
                mode,
                steps: vec![],
                dockerd: None,
                iptables: None,
                ip6tables: None,
                dns: None,
                warnings: vec![],
                notes: vec![],
            },
            dockerd_allowed: true,
        };
        let r = no_dockerd_report(&prepared(DockerMode::Impossible {
            reasons: vec!["no CAP_SYS_ADMIN".into()],
            suggestions: vec!["run with --privileged".into()],
        }));
        assert_eq!(
            r,
            Report::Failed {
                reason: "it cannot work in this container: no CAP_SYS_ADMIN. Ways that work: run with --privileged".into()
            }
        );
        let r = no_dockerd_report(&prepared(DockerMode::Remote {
            host: "tcp://h:2376".into(),
            kind: RemoteKind::TcpTls,
        }));
        assert_eq!(
            r,
            Report::NoDaemon {
                mode: "remote".into()
            }
        );
        let r = no_dockerd_report(&prepared(DockerMode::Sysbox));
        assert!(
            matches!(r, Report::Failed { reason } if reason.contains("preparation step failed"))
        );
    }
}
