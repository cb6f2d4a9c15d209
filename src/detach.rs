//! `ws-init start-docker [--timeout SECS]`: Docker for containers whose PID 1 is
//! not ws-init, such as a Dev Container Feature's `entrypoint` (the Dev
//! Containers CLI runs it with no arguments inside
//! `sh -c '…; ENTRYPOINT; exec "$@"'`, so it must return while the container's
//! command becomes PID 1).
//!
//! It forks a supervisor and waits, at most `--timeout`, for its one-line
//! report over a pipe. The supervisor becomes a session leader and a child
//! subreaper, brings Docker up exactly as `ws-init-bringup __bringup` does for
//! PID 1 (`handoff`: same probe, plan, steps and decision), then becomes the
//! resident core by exec: `ws-init __supervise-docker` with the handover on
//! fd 3 and the report pipe on fd 4 (see [`exec_core`]). The core supervises
//! dockerd (restarts with backoff), reaps the subtree, reports, and on SIGTERM
//! or SIGINT stops dockerd in order and exits. The parent returns 0 once
//! `/_ping` answers, so whatever runs next can use `docker` at once.
//!
//! One supervisor per container: it holds an exclusive `flock` on
//! [`PID_FILE`] (which holds its pid), so a second `start-docker` only waits
//! for the Docker the first one started. The lock dies with the process, so a
//! file left by a container restart is no obstacle.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use tracing::{info, warn};
use ws_init_core::handover::{self, Handover, Report};

use crate::app;
use crate::bringup;
use crate::config::Settings;
use crate::exit::EXIT_USAGE;
use crate::handoff;
use crate::plan::DockerMode;
use ws_init_core::{pid1, signals};

/// The supervisor's lock and pid file: `kill -TERM $(cat /run/ws-init-docker.pid)`
/// stops dockerd cleanly.
pub const PID_FILE: &str = "/run/ws-init-docker.pid";

/// The outcome of trying to become the container's one supervisor.
#[derive(Debug)]
pub enum Lock {
    /// We hold the lock: pass the file to the supervisor (never unlock it).
    Taken(File),
    /// Another live process holds it; its pid as written in the file.
    Held(Option<i32>),
}

/// Takes the exclusive lock on `path` without waiting. The file is opened
/// close-on-exec (only the core it is handed to by [`exec_core`] keeps it;
/// dockerd must not inherit it) and never through a link.
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

/// The forked supervisor: detaches, brings Docker up, then becomes the core
/// (which runs until SIGTERM/SIGINT); returns only when it cannot.
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
    // A SIGTERM during bring-up stays pending (the mask survives exec) and
    // is the core's first signal: the stop is never lost.
    if let Err(e) = signals::block_all() {
        warn!("cannot block signals until the supervisor reads them ({e})");
    }
    info!(
        pid = std::process::id(),
        "Docker supervisor started (ws-init start-docker)"
    );
    let (probe, plan) = bringup::probe_and_plan(&settings);
    let prepared = bringup::apply(probe, plan);
    // Only a rootless dockerd needs the user; resolved after the group edits.
    let main_user = match prepared.plan.mode {
        DockerMode::Rootless { .. } => app::resolve_run_as(&settings),
        _ => Ok(None),
    };
    let decision = handoff::decide(&handoff::Inputs {
        settings: &settings,
        prepared: Some(&prepared),
        main_user,
        stderr_is_terminal: nix::unistd::isatty(2).unwrap_or(false),
    });
    handoff::say(&decision.said);
    if decision.handover.dockerd.is_none() {
        let r = no_dockerd_report(&prepared);
        send(&mut Some(report), &r);
        return if matches!(r, Report::Failed { .. }) {
            1
        } else {
            0
        };
    }
    let core = match ws_init_core::paths::core_program() {
        Ok(core) => core,
        Err(e) => return cannot_supervise(Some(report), e.to_string()),
    };
    // A close-on-exec copy above the descriptors exec_core places: what is
    // left to tell the parent with when the exec fails.
    let spare = dup_above(&report, FD_PARKING).ok().map(File::from);
    let why = exec_core(&core, &decision.handover, report, lock);
    cannot_supervise(spare, why)
}

/// Tells the parent (and the log) why the core could not take over.
fn cannot_supervise(mut report: Option<File>, why: String) -> i32 {
    let reason = format!("cannot start the Docker supervisor: {why}");
    tracing::error!("{reason}");
    send(&mut report, &Report::Failed { reason });
    1
}

/// Where `ws-init __supervise-docker` finds the handover and the report pipe.
const CORE_HANDOVER_FD: RawFd = 3;
const CORE_REPORT_FD: RawFd = 4;
/// Descriptors are moved up here first, so placing one on 3 or 4 cannot
/// close another that happened to be there.
const FD_PARKING: RawFd = 10;

/// A close-on-exec duplicate of `fd`, numbered `min` or above.
fn dup_above(fd: &impl AsRawFd, min: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor the caller holds open.
    let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if high < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

/// Becomes the resident core: `CORE __supervise-docker`, with
/// - fd 3: a pipe holding `handover.encode()` (write end closed, so the core
///   reads to end of file), `WS_INIT_HANDOVER_FD=3`;
/// - fd 4: the report pipe's write end (one [`Report`] line for the waiting
///   parent), `WS_INIT_REPORT_FD=4`;
/// - the lock on [`PID_FILE`] still held through an inherited descriptor
///   (its number unspecified; not close-on-exec); the core makes every
///   inherited descriptor but 0–2 close-on-exec for its children;
/// - every signal blocked (a stop asked for during bring-up is pending), the
///   pid the pid file names, its own session, cwd `/`, stdio detached.
///
/// Returns why only when that fails.
fn exec_core(core: &Path, h: &Handover, report: File, lock: File) -> String {
    let argv = [core.as_os_str().as_bytes(), b"__supervise-docker"];
    let mut env: Vec<Vec<u8>> = std::env::vars_os()
        .filter(|(k, _)| k != handover::FD_ENV && k != handover::REPORT_FD_ENV)
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .collect();
    env.push(format!("{}={CORE_HANDOVER_FD}", handover::FD_ENV).into_bytes());
    env.push(format!("{}={CORE_REPORT_FD}", handover::REPORT_FD_ENV).into_bytes());
    let c_strings = |v: &[&[u8]]| {
        v.iter()
            .map(|s| CString::new(*s))
            .collect::<Result<Vec<_>, _>>()
    };
    let env: Vec<&[u8]> = env.iter().map(Vec::as_slice).collect();
    let (Ok(argv), Ok(env)) = (c_strings(&argv), c_strings(&env)) else {
        return "a NUL byte in its path or in the environment".into();
    };
    let pipe = match handover_pipe(h.encode().as_bytes()) {
        Ok(fd) => fd,
        Err(e) => return format!("cannot pass the plan to {}: {e}", core.display()),
    };
    if let Err(e) = place_fds(pipe, OwnedFd::from(report), OwnedFd::from(lock)) {
        return format!("cannot pass descriptors to {}: {e}", core.display());
    }
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_p.push(std::ptr::null());
    // SAFETY: NUL-terminated strings in null-terminated arrays, all alive
    // for the call; execve returns only on failure.
    unsafe { libc::execve(argv_p[0], argv_p.as_ptr(), env_p.as_ptr()) };
    format!(
        "cannot run {}: {}",
        core.display(),
        std::io::Error::last_os_error()
    )
}

/// A pipe holding `text` with its write end closed: the read end.
fn handover_pipe(text: &[u8]) -> std::io::Result<OwnedFd> {
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // Nobody reads before the exec: the pipe must hold it all (64 KiB by
    // default, far more than a handover).
    // SAFETY: F_GETPIPE_SZ on a pipe we own.
    let size = unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if size >= 0 && (size as usize) < text.len() {
        // SAFETY: F_SETPIPE_SZ on a pipe we own.
        if unsafe {
            libc::fcntl(
                write_end.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                text.len() as libc::c_int,
            )
        } < 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    File::from(write_end).write_all(text)?;
    Ok(read_end)
}

/// Puts the handover on fd 3 and the report on fd 4 (both inherited by the
/// exec) and keeps the lock's descriptor open across it.
fn place_fds(handover: OwnedFd, report: OwnedFd, lock: OwnedFd) -> std::io::Result<()> {
    // Parked above the targets first (the originals close), so no dup2
    // below lands on one of them.
    let (h, r, l) = (
        dup_above(&handover, FD_PARKING)?,
        dup_above(&report, FD_PARKING)?,
        dup_above(&lock, FD_PARKING)?,
    );
    drop((handover, report, lock));
    for (from, to) in [(&h, CORE_HANDOVER_FD), (&r, CORE_REPORT_FD)] {
        // SAFETY: dup2 of a descriptor we own onto a number nothing of ours
        // uses any more; the copy is not close-on-exec. It stays open on
        // purpose (for the exec), so it is never wrapped in an OwnedFd.
        if unsafe { libc::dup2(from.as_raw_fd(), to) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // The flock lives as long as any descriptor of its open file: this one
    // crosses the exec, and is never closed by this program.
    let l = l.into_raw_fd();
    // SAFETY: clears close-on-exec on a descriptor we own (and leave open).
    if unsafe { libc::fcntl(l, libc::F_SETFD, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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

    /// Set to a directory: [`exec_core_helper_process`] execs the fake core there.
    const HELPER_DIR: &str = "WS_INIT_TEST_EXEC_CORE_DIR";

    /// The exec contract, checked by a fake core (a shell script) that this
    /// test process becomes: the handover on fd 3 to end of file, the report
    /// on fd 4, both named in the environment, the lock still held. The lock
    /// and the report start on 4 and 3, the other way round, so placing
    /// them must not close one with the other.
    #[test]
    fn the_core_is_exec_d_with_the_handover_on_3_the_report_on_4_and_the_lock() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let core = d.join("fake-core");
        std::fs::write(
            &core,
            "#!/bin/sh\n\
             d=$(dirname \"$0\")\n\
             cat <&3 >\"$d/handover\"\n\
             echo \"$1 $WS_INIT_HANDOVER_FD $WS_INIT_REPORT_FD\" >\"$d/args\"\n\
             if flock -n \"$d/lock\" true; then echo free; else echo held; fi >\"$d/lock-state\"\n\
             echo 'ready 42' >&4\n",
        )
        .unwrap();
        std::fs::set_permissions(&core, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "detach::tests::exec_core_helper_process",
                "--ignored",
                "--test-threads=1",
            ])
            .env(HELPER_DIR, d)
            .output()
            .unwrap();
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(Handover::decode(&read("handover")), Ok(helper_handover()));
        assert_eq!(read("args"), "__supervise-docker 3 4\n");
        assert_eq!(read("lock-state"), "held\n");
        assert_eq!(
            Report::decode(&read("report")),
            Some(Report::Ready { pid: 42 })
        );
        // The lock ended with the process that held it.
        assert!(matches!(
            take_lock(&d.join("lock")).unwrap(),
            Lock::Taken(_)
        ));
    }

    fn helper_handover() -> Handover {
        Handover {
            log_level: ws_init_core::log::Level::Info,
            log_json: false,
            stop_timeout: Duration::from_secs(8),
            main_user: None,
            wait: ws_init_core::handover::DockerWait::Off,
            dockerd: Some(ws_init_core::handover::Dockerd {
                program: "/usr/bin/dockerd".into(),
                args: vec!["--group=docker".into()],
                env: vec![("container".into(), "docker".into())],
                socket: "/var/run/docker.sock".into(),
                log_path: "/var/log/dockerd.log".into(),
                log_max_bytes: 1 << 20,
                log_gid: 999,
                run_as: None,
                shutdown_timeout: Some(std::time::Duration::from_secs(4)),
            }),
            dns: None,
        }
    }

    /// Run only by the test above, in a process of its own, which it replaces.
    #[test]
    #[ignore = "a helper process of the_core_is_exec_d_with_the_handover_on_3_the_report_on_4_and_the_lock"]
    fn exec_core_helper_process() {
        let dir = std::path::PathBuf::from(std::env::var_os(HELPER_DIR).expect(HELPER_DIR));
        let Lock::Taken(lock) = take_lock(&dir.join("lock")).unwrap() else {
            panic!("lock held");
        };
        let report = File::create(dir.join("report")).unwrap();
        // The lock on fd 4 and the report on fd 3.
        let (l, r) = (
            dup_above(&lock, 20).unwrap(),
            dup_above(&report, 20).unwrap(),
        );
        drop((lock, report));
        for (from, to) in [(&l, 4), (&r, 3)] {
            // SAFETY: dup2 of descriptors this process owns onto 3 and 4,
            // which it owns from here on.
            assert!(unsafe { libc::dup2(from.as_raw_fd(), to) } >= 0);
        }
        drop((l, r));
        // SAFETY: placed just above, owned here alone.
        let (lock, report) = unsafe { (File::from_raw_fd(4), File::from_raw_fd(3)) };
        let why = exec_core(&dir.join("fake-core"), &helper_handover(), report, lock);
        panic!("exec failed: {why}");
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
