//! The dockerd supervisor (the core's poll-driven one) against real
//! processes: a second, private dockerd on this machine (own data root, exec
//! root, pid file and socket; its own containerd), and small shell programs
//! for the restart, log and stop paths.
//!
//! Each test drives the supervisor with a small poll loop ([`Driver`]), as
//! PID 1 does. `Children::reap_all` reaps every child of the test process
//! (`waitpid(-1)`), so the tests here run one at a time (LOCK).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use ws_init::config;
use ws_init_core::backoff::BackoffPolicy;
use ws_init_core::exit::ChildExit;
use ws_init_core::handover::Dockerd;
use ws_init_core::log::{self, Level};
use ws_init_core::ping::Probe;
use ws_init_core::reactor::{earliest, Interest};
use ws_init_core::reaper::Children;
use ws_init_core::supervise::State;
use ws_init_core::supervisor::{Spec, Supervisor};

static LOCK: Mutex<()> = Mutex::new(());
const DOCKERD: &str = "/usr/sbin/dockerd";
/// The longest the test loop sleeps: its conditions are checked this often.
const TICK: Duration = Duration::from_millis(10);

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Everything ws-init's core logs, kept for assertions (and copied to stderr).
static LOGS: Mutex<String> = Mutex::new(String::new());

fn capture(level: Level, args: fmt::Arguments<'_>) {
    let line = format!("{level:?} {args}\n");
    eprint!("{line}");
    LOGS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push_str(&line);
}

/// What the core logged since this test began.
fn captured() -> String {
    LOGS.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Takes the serial lock, captures the core's log lines (from debug up)
/// afresh, and makes orphans (dockerd's containerd) come to this process.
fn begin() -> MutexGuard<'static, ()> {
    let serial = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    log::set_output(capture);
    log::init(Level::Debug, false);
    LOGS.lock().unwrap_or_else(PoisonError::into_inner).clear();
    ws_init_core::pid1::become_subreaper_if_needed().unwrap();
    serial
}

/// The supervisor in a poll loop of its own, as PID 1 runs it.
struct Driver {
    sup: Supervisor,
    children: Children,
    interest: Interest,
}

impl Driver {
    fn start(spec: Spec) -> Driver {
        Driver {
            sup: Supervisor::start(spec),
            children: Children::default(),
            interest: Interest::default(),
        }
    }

    /// One turn: wait for the supervisor's descriptors or its next timer (at
    /// most a tick), reap, let it act.
    fn turn(&mut self) {
        self.interest.clear();
        self.sup.register(&mut self.interest);
        let wake = earliest(self.sup.deadline(), Some(Instant::now() + TICK));
        self.interest.poll(wake).unwrap();
        self.children.reap_all();
        self.sup
            .service(&self.interest, &mut self.children, Instant::now());
    }

    /// Turns until `done` holds, failing after `within`.
    fn until(&mut self, within: Duration, what: &str, mut done: impl FnMut(&Supervisor) -> bool) {
        let deadline = Instant::now() + within;
        while !done(&self.sup) {
            assert!(
                Instant::now() < deadline,
                "no {what} within {within:?}; now {:?}",
                self.sup.state()
            );
            self.turn();
        }
    }

    /// Turns until the state matches, and returns it.
    fn wait_state(
        &mut self,
        within: Duration,
        what: &str,
        matches: impl Fn(&State) -> bool,
    ) -> State {
        self.until(within, what, |s| matches(s.state()));
        self.sup.state().clone()
    }

    /// Turns for `d`, the supervisor carrying on meanwhile.
    fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.turn();
        }
    }

    /// The first start's outcome: dockerd's pid once it answers, or why not.
    fn first_start(&mut self, within: Duration) -> Result<i32, String> {
        self.until(within, "first start's outcome", |s| {
            s.first_start().is_some()
        });
        self.sup.first_start().unwrap()
    }

    /// Asks for the stop and turns until the supervisor is done: how the
    /// last dockerd ended.
    fn stop(&mut self, within: Duration) -> Option<ChildExit> {
        self.sup.request_stop();
        self.until(within, "end after the stop", Supervisor::finished);
        assert_eq!(
            self.sup.deadline(),
            None,
            "a finished supervisor still wants the loop woken"
        );
        self.sup.last_exit()
    }

    /// Leaves nothing behind (containerd, shims, sleeps): SIGTERM to every
    /// descendant, SIGKILL to those left after 10 s; the log pipes are read
    /// meanwhile, so nobody dies of SIGPIPE.
    fn leave_nothing_behind(mut self) {
        for (signo, grace) in [
            (libc::SIGTERM, Duration::from_secs(10)),
            (libc::SIGKILL, Duration::from_secs(5)),
        ] {
            self.children.signal_remaining(signo);
            let end = Instant::now() + grace;
            while !self.children.nothing_left() && Instant::now() < end {
                self.turn();
            }
        }
        assert!(self.children.nothing_left(), "children left behind");
    }
}

impl Drop for Driver {
    /// A failed test leaves nothing running either (dockerd, containerd, sleeps).
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.children.signal_remaining(libc::SIGKILL);
            let end = Instant::now() + Duration::from_secs(5);
            while !self.children.nothing_left() && Instant::now() < end {
                std::thread::sleep(TICK);
            }
        }
    }
}

/// Unmounts what dockerd left mounted under its directory when dropped,
/// so a failed test leaves no mount behind either.
struct UnmountOnDrop(PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        unmount_under(&self.0);
    }
}

/// One `/_ping` on `socket`, retried until it answers or `within` passes.
fn ping(socket: &Path, within: Duration) -> Result<(), String> {
    let mut probe = Probe::new(socket, Instant::now(), within);
    let mut interest = Interest::default();
    loop {
        interest.clear();
        probe.register(&mut interest);
        interest.poll(probe.deadline()).unwrap();
        if let Some(outcome) = probe.service(&interest, Instant::now()) {
            return outcome;
        }
    }
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// Unmounts whatever dockerd left mounted under `dir` (its data root is bind-mounted on itself).
fn unmount_under(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = umount2(&p, MntFlags::MNT_DETACH);
    }
}

/// Moves the calling thread (and what it spawns from now on) into a mount
/// namespace of its own, with no propagation back to the machine's.
fn private_mount_namespace() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
    let none = None::<&str>;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).unwrap();
}

/// The spec with the production defaults for everything not given.
fn spec(program: impl Into<PathBuf>, args: Vec<String>, socket: PathBuf, log: PathBuf) -> Spec {
    let dockerd = Dockerd {
        program: program.into(),
        args,
        env: Vec::new(),
        socket,
        log_path: log,
        log_max_bytes: config::DEFAULT_DOCKERD_LOG_MAX,
        log_gid: config::DEFAULT_DOCKER_GID,
        run_as: None,
        shutdown_timeout: None,
    };
    Spec {
        // The machine's own /run is not the tests' to clear.
        clear_stale_pid_files: false,
        ..Spec::new(dockerd, config::DEFAULT_STOP_TIMEOUT)
    }
}

fn script_spec(dir: &Path, script: &str) -> Spec {
    let mut spec = spec(
        "/bin/sh",
        vec!["-c".into(), script.into()],
        dir.join("never.sock"),
        dir.join("log/dockerd.log"),
    );
    spec.backoff = BackoffPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        reset_after: Duration::from_secs(60),
    };
    spec
}

/// dockerd's flags for a private instance under `d`: not the host's
/// /etc/docker/daemon.json, paths, socket or networking.
fn private_dockerd_args(d: &Path, socket: &Path) -> Vec<String> {
    vec![
        format!("--config-file={}", d.join("daemon.json").display()),
        format!("--data-root={}", d.join("data").display()),
        format!("--exec-root={}", d.join("exec").display()),
        format!("--pidfile={}", d.join("docker.pid").display()),
        format!("--host=unix://{}", socket.display()),
    ]
}

#[test]
fn a_real_dockerd_becomes_ready_is_restarted_after_kill_and_stops_on_request() {
    if !is_root() {
        eprintln!("skipped: running a dockerd needs root");
        return;
    }
    if !Path::new(DOCKERD).exists() {
        eprintln!("skipped: {DOCKERD} is not installed");
        return;
    }
    let _serial = begin();
    // Short path: containerd's socket under the exec root must fit a sockaddr_un.
    let dir = tempfile::Builder::new()
        .prefix("wsd")
        .tempdir_in("/tmp")
        .unwrap();
    let d = dir.path().to_path_buf();
    let _unmount = UnmountOnDrop(d.clone());
    std::fs::write(d.join("daemon.json"), "{}").unwrap();
    let socket = d.join("docker.sock");
    let log = d.join("log/dockerd.log");
    // Its own network namespace: a second dockerd beside the host's would
    // otherwise tear down the host's docker0 bridge (seen here with
    // --bridge=none). `unshare` without --fork execs dockerd in place, so the
    // supervised pid is dockerd's.
    let mut args = vec!["--net".into(), "--".into(), DOCKERD.into()];
    args.extend(private_dockerd_args(&d, &socket));
    args.extend(["--bridge=none".into(), "--iptables=false".into()]);
    // dockerd's pid file is under `d`, not /run: a stale one (after the
    // SIGKILL below) names a dead pid, which dockerd itself overwrites.
    let mut spec = spec("unshare", args, socket.clone(), log.clone());
    spec.stop_timeout = Duration::from_secs(20);
    let stop_timeout = spec.stop_timeout;

    let mut dockerd = Driver::start(spec);
    let first = match dockerd.first_start(Duration::from_secs(60)) {
        Ok(pid) => pid,
        Err(why) => panic!(
            "dockerd not ready: {why}; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ),
    };
    ping(&socket, Duration::from_secs(2)).unwrap();
    let content = std::fs::read_to_string(&log).unwrap();
    assert!(
        content.contains("[ws-init] started unshare --net -- /usr/sbin/dockerd"),
        "{content}"
    );
    assert!(content.contains("msg=\"Starting up\""), "{content}");
    assert!(
        content.contains("[ws-init] dockerd answers on"),
        "{content}"
    );

    // An unexpected death: restarted after the first backoff delay, with a new pid.
    kill(Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL).unwrap();
    let restarting = dockerd.wait_state(Duration::from_secs(10), "Restarting", |s| {
        matches!(s, State::Restarting { .. })
    });
    assert_eq!(
        restarting,
        State::Restarting {
            attempt: 1,
            delay: Duration::from_millis(500)
        }
    );
    let second = match dockerd.wait_state(
        Duration::from_secs(60),
        "Ready again",
        |s| matches!(s, State::Ready { pid } if *pid != first),
    ) {
        State::Ready { pid } => pid,
        other => unreachable!("{other:?}"),
    };
    assert!(!alive(first));
    ping(&socket, Duration::from_secs(2)).unwrap();
    let content = std::fs::read_to_string(&log).unwrap();
    assert!(
        content.contains("killed by SIGKILL; restarting in 500ms"),
        "{content}"
    );

    // A requested stop: SIGTERM is enough, well within the timeout, and no restart follows.
    let asked = Instant::now();
    let exit = dockerd.stop(stop_timeout + Duration::from_secs(10));
    let took = asked.elapsed();
    assert_eq!(
        exit,
        Some(ChildExit::Exited(0)),
        "dockerd's exit after SIGTERM"
    );
    assert!(took < stop_timeout, "stop took {took:?}");
    assert_eq!(dockerd.sup.state(), &State::Stopped);
    assert!(!alive(second));
    assert!(ping(&socket, Duration::from_secs(1)).is_err());
    dockerd.run_for(Duration::from_secs(1));
    assert_eq!(dockerd.sup.state(), &State::Stopped);
    assert_eq!(
        dockerd.sup.first_start(),
        Some(Err("dockerd was stopped".into()))
    );
    eprintln!("stop took {took:?}");
    dockerd.leave_nothing_behind();
    let logs = captured();
    assert!(logs.contains("dockerd ready after"), "{logs}");
    assert!(logs.contains("restarting in 500ms (restart 1"), "{logs}");
}

#[test]
fn an_exiting_program_is_restarted_with_growing_delays_its_warnings_echoed_once() {
    if !is_root() {
        eprintln!("skipped: the supervisor's tests spawn as root");
        return;
    }
    let _serial = begin();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    // The stale pid files the supervisor clears live under /run: this test
    // gets a /run of its own (a tmpfs in a private mount namespace, which
    // the program inherits), so the machine's pid files are never touched.
    let stale = "/run/docker.pid";
    let script = format!(
        r#"test -e {stale} && echo 'level=error msg="stale pid file still there"'
echo $$ > {stale}
i=0; while [ $i -lt 5 ]; do echo 'time="t" level=warning msg="disk is slow" device=/dev/x'; i=$((i+1)); done
echo 'time="t" level=info msg="not for stderr"'
echo 'plain failure line' >&2
exit 3"#
    );
    let mut spec = script_spec(&d, &script);
    spec.clear_stale_pid_files = true;
    let log = spec.dockerd.log_path.clone();

    std::thread::spawn(move || {
        private_mount_namespace();
        let none = None::<&str>;
        mount(Some("tmpfs"), "/run", Some("tmpfs"), MsFlags::empty(), none).unwrap();
        let mut program = Driver::start(spec);
        for (attempt, ms) in [(1, 50), (2, 100), (3, 200), (4, 200)] {
            let want = State::Restarting {
                attempt,
                delay: Duration::from_millis(ms),
            };
            program.wait_state(Duration::from_secs(5), &format!("{want:?}"), |s| *s == want);
        }
        assert_eq!(
            program.stop(Duration::from_secs(5)),
            Some(ChildExit::Exited(3))
        );
        assert_eq!(program.sup.state(), &State::Stopped);
        program.leave_nothing_behind();
    })
    .join()
    .unwrap();
    let content = std::fs::read_to_string(&log).unwrap();
    assert!(
        content
            .matches("level=warning msg=\"disk is slow\"")
            .count()
            >= 20,
        "{content}"
    );
    assert!(content.contains("plain failure line"));
    assert!(
        content.contains("[ws-init] dockerd exited with status 3; restarting in 100ms"),
        "{content}"
    );
    assert!(
        !content
            .lines()
            .any(|l| l.starts_with("level=error msg=\"stale pid file")),
        "stale file not removed before a start"
    );
    let logs = captured();
    // Cleared before every start: each start but the first found the
    // previous run's file.
    let starts = content.matches("[ws-init] started /bin/sh").count();
    let removed = logs.matches("removed stale /run/docker.pid").count();
    assert!(starts >= 4, "{starts} starts: {content}");
    assert_eq!(removed, starts - 1, "{logs}");
    // Echoed once despite 20+ occurrences; info lines never.
    assert_eq!(
        logs.matches("dockerd: disk is slow device=/dev/x").count(),
        1,
        "{logs}"
    );
    assert_eq!(
        logs.matches("dockerd: plain failure line").count(),
        1,
        "{logs}"
    );
    assert!(!logs.contains("not for stderr"), "{logs}");
    assert!(
        logs.contains("dockerd exited with status 3 before it answered"),
        "{logs}"
    );
}

#[test]
fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
    if !is_root() {
        eprintln!("skipped: the supervisor's tests spawn as root");
        return;
    }
    let _serial = begin();
    let dir = tempfile::tempdir().unwrap();
    // Ignored signals stay ignored across exec: sleep ignores SIGTERM.
    let mut spec = script_spec(dir.path(), "trap '' TERM; echo started; exec sleep 600");
    spec.stop_timeout = Duration::from_millis(300);
    let mut program = Driver::start(spec);
    let pid = match program.wait_state(Duration::from_secs(5), "Starting with a pid", |s| {
        matches!(s, State::Starting { pid: Some(_), .. })
    }) {
        State::Starting { pid: Some(pid), .. } => pid,
        other => unreachable!("{other:?}"),
    };
    // Let the shell reach the exec.
    program.run_for(Duration::from_millis(200));
    let asked = Instant::now();
    let exit = program.stop(Duration::from_secs(10));
    let took = asked.elapsed();
    assert_eq!(
        exit,
        Some(ChildExit::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false
        })
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(!alive(pid));
    program.leave_nothing_behind();
    let logs = captured();
    assert!(logs.contains("after SIGTERM: sending SIGKILL"), "{logs}");
}

#[test]
fn the_log_rotates_while_a_program_writes() {
    if !is_root() {
        eprintln!("skipped: the supervisor's tests spawn as root");
        return;
    }
    let _serial = begin();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = script_spec(
        dir.path(),
        r#"i=0; while [ $i -lt 500 ]; do echo "time=\"t\" level=info msg=\"line $i\""; i=$((i+1)); done; exec sleep 600"#,
    );
    spec.dockerd.log_max_bytes = 4096;
    let log = spec.dockerd.log_path.clone();
    let mut program = Driver::start(spec);
    program.until(Duration::from_secs(10), "last line in the log", |_| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("msg=\"line 499\"")
    });
    program.stop(Duration::from_secs(20));
    program.leave_nothing_behind();
    let current = std::fs::read_to_string(&log).unwrap();
    let mut old = log.clone().into_os_string();
    old.push(".1");
    let old = std::fs::read_to_string(PathBuf::from(old)).unwrap();
    assert!(
        current.len() <= 4096 && old.len() <= 4096,
        "{} {}",
        current.len(),
        old.len()
    );
    assert!(old.contains("msg=\"line"), "{old}");
}

#[test]
fn a_missing_program_fails_once_without_a_restart_loop() {
    if !is_root() {
        eprintln!("skipped: the supervisor's tests spawn as root");
        return;
    }
    let _serial = begin();
    let dir = tempfile::tempdir().unwrap();
    let mut program = Driver::start(spec(
        dir.path().join("no-dockerd"),
        Vec::new(),
        dir.path().join("s.sock"),
        dir.path().join("d.log"),
    ));
    let reason = program
        .first_start(Duration::from_secs(5))
        .expect_err("a missing program started");
    assert!(reason.contains("no-dockerd"), "{reason}");
    assert!(
        matches!(program.sup.state(), State::Failed { reason } if reason.contains("no-dockerd")),
        "{:?}",
        program.sup.state()
    );
    assert!(program.sup.finished());
    // No restart loop: nothing more happens, and a stop has nothing to stop.
    program.run_for(Duration::from_millis(300));
    assert!(matches!(program.sup.state(), State::Failed { .. }));
    assert_eq!(program.stop(Duration::from_secs(1)), None);
    program.leave_nothing_behind();
    let logs = captured();
    assert_eq!(logs.matches("cannot start dockerd").count(), 1, "{logs}");
}

/// A full certificate layout on a read-only volume (issue 12): the
/// certificates are checked, kept as they are, and dockerd starts with TLS.
#[test]
fn a_real_dockerd_starts_with_tls_from_a_read_only_cert_dir() {
    if !is_root() {
        eprintln!("skipped: running a dockerd needs root");
        return;
    }
    if !Path::new(DOCKERD).exists() {
        eprintln!("skipped: {DOCKERD} is not installed");
        return;
    }
    let _serial = begin();
    let dir = tempfile::Builder::new()
        .prefix("wst")
        .tempdir_in("/tmp")
        .unwrap();
    let d = dir.path().to_path_buf();
    let certs = d.join("certs");
    let req = ws_init::tls::TlsRequest {
        dir: certs.clone(),
        hostname: "ws1".into(),
        ips: vec!["127.0.0.1".parse().unwrap()],
        extra_sans: Vec::new(),
    };
    ws_init::tls::ensure_certificates(&req, time::OffsetDateTime::now_utc()).unwrap();
    // Its own thread, so the read-only mount lives in a private mount namespace.
    let (outcome, content) = std::thread::spawn(move || {
        private_mount_namespace();
        // Before the driver: dropped after it, once dockerd is gone.
        let _unmount = UnmountOnDrop(d.clone());
        let none = None::<&str>;
        mount(Some(&certs), &certs, none, MsFlags::MS_BIND, none).unwrap();
        let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(none, &certs, none, ro, none).unwrap();
        let outcome = ws_init::tls::ensure_certificates(&req, time::OffsetDateTime::now_utc())
            .map_err(|e| e.to_string());
        std::fs::write(d.join("daemon.json"), "{}").unwrap();
        let socket = d.join("docker.sock");
        let log = d.join("log/dockerd.log");
        let server = certs.join("server");
        let mut args: Vec<String> = vec![
            "--net".into(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            "ip link set lo up && exec \"$0\" \"$@\"".into(),
            DOCKERD.into(),
        ];
        args.extend(private_dockerd_args(&d, &socket));
        args.extend([
            "--host=tcp://127.0.0.1:2376".into(),
            "--tlsverify".into(),
            format!("--tlscacert={}", server.join("ca.pem").display()),
            format!("--tlscert={}", server.join("cert.pem").display()),
            format!("--tlskey={}", server.join("key.pem").display()),
            "--bridge=none".into(),
            "--iptables=false".into(),
        ]);
        let mut spec = spec("unshare", args, socket, log.clone());
        spec.stop_timeout = Duration::from_secs(20);
        let mut dockerd = Driver::start(spec);
        if let Err(why) = dockerd.first_start(Duration::from_secs(60)) {
            panic!(
                "dockerd not ready: {why}; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        dockerd.stop(Duration::from_secs(30));
        dockerd.leave_nothing_behind();
        let content = std::fs::read_to_string(&log).unwrap_or_default();
        (outcome, content)
    })
    .join()
    .unwrap();
    let outcome = outcome.unwrap();
    assert!(!outcome.generated, "{outcome:?}");
    assert!(
        content.contains("API listen on 127.0.0.1:2376"),
        "{content}"
    );
}
