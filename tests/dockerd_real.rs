//! The dockerd supervisor against real processes: a second, private dockerd
//! on this machine (own data root, exec root, pid file and socket; its own
//! containerd), and small shell programs for the restart, log and stop paths.
//!
//! A `Reaper` reaps every child of the test process, so the tests here run
//! one at a time (LOCK), each on its own current-thread runtime.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;
use ws_init::docker_api;
use ws_init::dockerd::{BackoffPolicy, DockerdHandle, DockerdSpec, NotRunning, State, Supervisor};
use ws_init::exit::ChildExit;
use ws_init::pid1::{self, Reaper};

static LOCK: Mutex<()> = Mutex::new(());
const DOCKERD: &str = "/usr/sbin/dockerd";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Everything ws-init logs through tracing, kept for assertions (and copied to stderr).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `body` with a reaper on a fresh runtime, with tracing captured.
fn with_reaper<F, Fut>(body: F) -> String
where
    F: FnOnce(Reaper) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // The core's lines (the dockerd log's warnings, the echo) go through tracing too.
    ws_init::logging::route_core_log();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    pid1::become_subreaper_if_needed().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let reaper = Reaper::start().unwrap();
        body(reaper.clone()).await;
        // Leave nothing behind (containerd, shims, sleeps).
        reaper
            .terminate_remaining(Instant::now() + Duration::from_secs(10))
            .await;
        assert!(!reaper.has_children(), "children left behind");
    });
    captured.text()
}

async fn wait_state(
    handle: &DockerdHandle,
    within: Duration,
    what: &str,
    pred: impl FnMut(&State) -> bool,
) -> State {
    let mut rx = handle.state();
    let found = match tokio::time::timeout(within, rx.wait_for(pred)).await {
        Ok(Ok(state)) => Some(state.clone()),
        _ => None,
    };
    found.unwrap_or_else(|| {
        panic!(
            "no state {what} within {within:?}; now {:?}",
            handle.current()
        )
    })
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
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn script_spec(dir: &Path, script: &str) -> DockerdSpec {
    let mut spec = DockerdSpec::new(
        "/bin/sh",
        dir.join("never.sock"),
        dir.join("log/dockerd.log"),
    );
    spec.args = vec!["-c".into(), script.into()];
    spec.backoff = BackoffPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        reset_after: Duration::from_secs(60),
    };
    spec
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
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Short path: containerd's socket under the exec root must fit a sockaddr_un.
    let dir = tempfile::Builder::new()
        .prefix("wsd")
        .tempdir_in("/tmp")
        .unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(d.join("daemon.json"), "{}").unwrap();
    let socket = d.join("docker.sock");
    let pidfile = d.join("docker.pid");
    let log = d.join("log/dockerd.log");
    // Its own network namespace: a second dockerd beside the host's would
    // otherwise tear down the host's docker0 bridge (seen here with
    // --bridge=none). `unshare` without --fork execs dockerd in place, so the
    // supervised pid is dockerd's.
    let mut spec = DockerdSpec::new("unshare", &socket, &log);
    spec.args = [
        "--net".into(),
        "--".into(),
        DOCKERD.into(),
        // Not the host's /etc/docker/daemon.json, paths, socket or networking.
        format!("--config-file={}", d.join("daemon.json").display()),
        format!("--data-root={}", d.join("data").display()),
        format!("--exec-root={}", d.join("exec").display()),
        format!("--pidfile={}", pidfile.display()),
        format!("--host=unix://{}", socket.display()),
        "--bridge=none".into(),
        "--iptables=false".into(),
    ]
    .into();
    spec.stale_files = vec![pidfile.clone()];
    spec.stop_timeout = Duration::from_secs(20);
    let stop_timeout = spec.stop_timeout;

    let logs = with_reaper(|reaper| async move {
        let handle = Supervisor::start(&reaper, spec);
        let first = match tokio::time::timeout(Duration::from_secs(60), handle.ready()).await {
            Ok(Ok(pid)) => pid,
            other => panic!(
                "dockerd not ready: {other:?}; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        docker_api::ping_unix(&socket, Duration::from_secs(2))
            .await
            .unwrap();
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
        kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
        let restarting = wait_state(&handle, Duration::from_secs(10), "Restarting", |s| {
            matches!(s, State::Restarting { .. })
        })
        .await;
        assert_eq!(
            restarting,
            State::Restarting {
                attempt: 1,
                delay: Duration::from_millis(500)
            }
        );
        let second = match wait_state(
            &handle,
            Duration::from_secs(60),
            "Ready again",
            |s| matches!(s, State::Ready { pid } if *pid != first),
        )
        .await
        {
            State::Ready { pid } => pid,
            other => unreachable!("{other:?}"),
        };
        assert!(!alive(first));
        docker_api::ping_unix(&socket, Duration::from_secs(2))
            .await
            .unwrap();
        let content = std::fs::read_to_string(&log).unwrap();
        assert!(
            content.contains("killed by SIGKILL; restarting in 500ms"),
            "{content}"
        );

        // A requested stop: SIGTERM is enough, well within the timeout, and no restart follows.
        let asked = Instant::now();
        let exit = handle.stop().await;
        let took = asked.elapsed();
        assert_eq!(
            exit,
            Some(ChildExit::Exited(0)),
            "dockerd's exit after SIGTERM"
        );
        assert!(took < stop_timeout, "stop took {took:?}");
        assert_eq!(handle.current(), State::Stopped);
        assert!(!alive(second));
        assert!(docker_api::ping_unix(&socket, Duration::from_secs(1))
            .await
            .is_err());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(handle.current(), State::Stopped);
        assert_eq!(handle.ready().await, Err(NotRunning::Stopped));
        eprintln!("stop took {took:?}");
    });
    unmount_under(&d);
    assert!(logs.contains("dockerd ready after"), "{logs}");
    assert!(logs.contains("restarting in 500ms (restart 1"), "{logs}");
}

#[test]
fn an_exiting_program_is_restarted_with_growing_delays_its_warnings_echoed_once() {
    if !is_root() {
        eprintln!("skipped: the supervisor's tests spawn as root");
        return;
    }
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let stale = d.join("docker.pid");
    let script = format!(
        r#"test -e {stale} && echo 'level=error msg="stale pid file still there"'
echo 1 > {stale}
i=0; while [ $i -lt 5 ]; do echo 'time="t" level=warning msg="disk is slow" device=/dev/x'; i=$((i+1)); done
echo 'time="t" level=info msg="not for stderr"'
echo 'plain failure line' >&2
exit 3"#,
        stale = stale.display()
    );
    let mut spec = script_spec(&d, &script);
    spec.stale_files = vec![stale];
    let hook_runs = std::rc::Rc::new(std::cell::Cell::new(0));
    let counter = hook_runs.clone();
    spec.pre_start = Some(Box::new(move || counter.set(counter.get() + 1)));
    let log = spec.log_path.clone();

    let logs = with_reaper(|reaper| async move {
        let handle = Supervisor::start(&reaper, spec);
        for (attempt, ms) in [(1, 50), (2, 100), (3, 200), (4, 200)] {
            let want = State::Restarting {
                attempt,
                delay: Duration::from_millis(ms),
            };
            wait_state(&handle, Duration::from_secs(5), &format!("{want:?}"), |s| {
                *s == want
            })
            .await;
        }
        assert_eq!(handle.stop().await, Some(ChildExit::Exited(3)));
        assert_eq!(handle.current(), State::Stopped);
        assert!(
            hook_runs.get() >= 4,
            "pre_start ran {} times",
            hook_runs.get()
        );
    });
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
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // Ignored signals stay ignored across exec: sleep ignores SIGTERM.
    let mut spec = script_spec(dir.path(), "trap '' TERM; echo started; exec sleep 600");
    spec.stop_timeout = Duration::from_millis(300);
    with_reaper(|reaper| async move {
        let handle = Supervisor::start(&reaper, spec);
        let pid = match wait_state(
            &handle,
            Duration::from_secs(5),
            "Starting with a pid",
            |s| matches!(s, State::Starting { pid: Some(_), .. }),
        )
        .await
        {
            State::Starting { pid: Some(pid), .. } => pid,
            other => unreachable!("{other:?}"),
        };
        // Let the shell reach the exec.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = Instant::now();
        let exit = handle.stop().await;
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
    });
}

#[test]
fn the_log_rotates_while_a_program_writes() {
    if !is_root() {
        eprintln!("skipped: the supervisor's tests spawn as root");
        return;
    }
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut spec = script_spec(
        dir.path(),
        r#"i=0; while [ $i -lt 500 ]; do echo "time=\"t\" level=info msg=\"line $i\""; i=$((i+1)); done; exec sleep 600"#,
    );
    spec.log_max_bytes = 4096;
    let log = spec.log_path.clone();
    let probe = log.clone();
    with_reaper(|reaper| async move {
        let handle = Supervisor::start(&reaper, spec);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&probe)
            .unwrap_or_default()
            .contains("msg=\"line 499\"")
        {
            assert!(
                Instant::now() < deadline,
                "the last line never reached the log"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        handle.stop().await;
    });
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
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let spec = DockerdSpec::new(
        dir.path().join("no-dockerd"),
        dir.path().join("s.sock"),
        dir.path().join("d.log"),
    );
    let logs = with_reaper(|reaper| async move {
        let handle = Supervisor::start(&reaper, spec);
        match tokio::time::timeout(Duration::from_secs(5), handle.ready()).await {
            Ok(Err(NotRunning::Failed(reason))) => {
                assert!(reason.contains("no-dockerd"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(handle.stop().await, None);
    });
    assert_eq!(logs.matches("cannot start dockerd").count(), 1, "{logs}");
}

/// A full certificate layout on a read-only volume (issue 12): the
/// certificates are checked, kept as they are, and dockerd starts with TLS.
#[test]
fn a_real_dockerd_starts_with_tls_from_a_read_only_cert_dir() {
    use nix::mount::{mount, MsFlags};
    if !is_root() {
        eprintln!("skipped: running a dockerd needs root");
        return;
    }
    if !Path::new(DOCKERD).exists() {
        eprintln!("skipped: {DOCKERD} is not installed");
        return;
    }
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
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
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
        let none = None::<&str>;
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).unwrap();
        mount(Some(&certs), &certs, none, MsFlags::MS_BIND, none).unwrap();
        let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(none, &certs, none, ro, none).unwrap();
        let outcome = ws_init::tls::ensure_certificates(&req, time::OffsetDateTime::now_utc())
            .map_err(|e| e.to_string());
        std::fs::write(d.join("daemon.json"), "{}").unwrap();
        let socket = d.join("docker.sock");
        let pidfile = d.join("docker.pid");
        let log = d.join("log/dockerd.log");
        let server = certs.join("server");
        let mut spec = DockerdSpec::new("unshare", &socket, &log);
        spec.args = vec![
            "--net".into(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            "ip link set lo up && exec \"$0\" \"$@\"".into(),
            DOCKERD.into(),
            format!("--config-file={}", d.join("daemon.json").display()),
            format!("--data-root={}", d.join("data").display()),
            format!("--exec-root={}", d.join("exec").display()),
            format!("--pidfile={}", pidfile.display()),
            format!("--host=unix://{}", socket.display()),
            "--host=tcp://127.0.0.1:2376".into(),
            "--tlsverify".into(),
            format!("--tlscacert={}", server.join("ca.pem").display()),
            format!("--tlscert={}", server.join("cert.pem").display()),
            format!("--tlskey={}", server.join("key.pem").display()),
            "--bridge=none".into(),
            "--iptables=false".into(),
        ];
        spec.stale_files = vec![pidfile];
        spec.stop_timeout = Duration::from_secs(20);
        let log2 = log.clone();
        with_reaper(|reaper| async move {
            let handle = Supervisor::start(&reaper, spec);
            match tokio::time::timeout(Duration::from_secs(60), handle.ready()).await {
                Ok(Ok(_)) => {}
                other => panic!(
                    "dockerd not ready: {other:?}; log:\n{}",
                    std::fs::read_to_string(&log2).unwrap_or_default()
                ),
            }
            handle.stop().await;
        });
        let content = std::fs::read_to_string(&log).unwrap_or_default();
        unmount_under(&d);
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
