//! `ws-init-bringup __bringup` as the real binary, the way PID 1 runs it: a
//! pipe's write end on a descriptor named by `WS_INIT_HANDOVER_FD`, the
//! handover read back to end of file and decoded. Docker stays off here
//! (turning it on would mount and edit /etc/group on the host); the mapping
//! with Docker on is unit-tested in src/handoff.rs. Needs root: the user
//! switch is only planned when ws-init runs as root.

mod common;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use ws_init_core::handover::{DockerWait, Handover, FD_ENV};
use ws_init_core::log::Level;

/// The descriptor the child gets the pipe on (as PID 1 would choose one).
const CHILD_FD: i32 = 7;

struct Run {
    code: Option<i32>,
    handover: String,
    stderr: String,
}

fn bringup_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ws-init-bringup")
}

/// Runs `ws-init-bringup __bringup` with `env` only (and PATH), the pipe on
/// [`CHILD_FD`] unless `fd_env` says otherwise.
fn bringup(env: &[(&str, &str)], fd_env: Option<&str>) -> Run {
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut cmd = Command::new(bringup_bin());
    cmd.arg("__bringup")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(v) = fd_env {
        cmd.env(FD_ENV, v);
    }
    let w = write_end.as_raw_fd();
    // SAFETY: dup2 and fcntl only, between fork and exec, on a descriptor
    // opened before.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec: clear it then.
            let r = if w == CHILD_FD {
                libc::fcntl(w, libc::F_SETFD, 0)
            } else {
                libc::dup2(w, CHILD_FD)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run ws-init-bringup");
    drop(write_end);
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::fs::File::from(read_end)
            .read_to_string(&mut text)
            .unwrap();
        text
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ws-init-bringup __bringup still running after 20 s: {stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        handover: reader.join().unwrap(),
        stderr,
    }
}

#[test]
fn docker_off_hands_over_the_user_log_and_stop_budget() {
    if !common::root_or_skip("docker_off_hands_over_the_user_log_and_stop_budget") {
        return;
    }
    let fd = CHILD_FD.to_string();
    let r = bringup(
        &[
            ("WS_USER", "root"),
            ("WS_STOP_TIMEOUT", "5"),
            ("WS_LOG_LEVEL", "debug"),
            ("WS_LOG_FORMAT", "json"),
        ],
        Some(&fd),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let h = Handover::decode(&r.handover)
        .unwrap_or_else(|e| panic!("{e}: {:?} (stderr: {})", r.handover, r.stderr));
    assert_eq!(h.log_level, Level::Debug);
    assert!(h.log_json);
    assert_eq!(h.stop_timeout, Duration::from_secs(5));
    let u = h.main_user.expect("WS_USER=root is handed over");
    assert_eq!((u.name.as_str(), u.uid, u.gid), ("root", 0, 0));
    assert_eq!(h.wait, DockerWait::Off);
    assert_eq!(h.dockerd, None);
    assert_eq!(h.dns, None);
}

#[test]
fn defaults_without_a_workspace_user_keep_the_caller() {
    if !common::root_or_skip("defaults_without_a_workspace_user_keep_the_caller") {
        return;
    }
    // No `workspace` user on a build host: the main command stays root.
    let has_workspace = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("workspace:"));
    let fd = CHILD_FD.to_string();
    let r = bringup(&[("WS_DOCKER_WAIT", "1")], Some(&fd));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let h = Handover::decode(&r.handover).unwrap();
    // stderr is a pipe, not a terminal: INFO stays on.
    assert_eq!(h.log_level, Level::Info);
    assert!(!h.log_json);
    assert_eq!(h.stop_timeout, Duration::from_secs(8));
    if !has_workspace {
        assert_eq!(h.main_user, None);
    }
    // Docker off: nothing to wait for.
    assert_eq!(h.wait, DockerWait::Off);
}

#[test]
fn an_unknown_user_is_exit_2_with_the_message_and_no_handover() {
    if !common::root_or_skip("an_unknown_user_is_exit_2_with_the_message_and_no_handover") {
        return;
    }
    let fd = CHILD_FD.to_string();
    let r = bringup(&[("WS_USER", "ws-init-test-nosuch")], Some(&fd));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("WS_USER") && r.stderr.contains("ws-init-test-nosuch"),
        "{}",
        r.stderr
    );
    assert_eq!(r.handover, "");
}

#[test]
fn bad_configuration_is_exit_2_with_the_message_and_no_handover() {
    let fd = CHILD_FD.to_string();
    let r = bringup(&[("WS_DOCKER_ENABLE_CLIENT", "banana")], Some(&fd));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("WS_DOCKER_ENABLE_CLIENT") && r.stderr.contains("banana"),
        "{}",
        r.stderr
    );
    assert_eq!(r.handover, "");
}

#[test]
fn without_its_descriptor_it_refuses_to_run() {
    for (fd_env, says) in [
        (None, "WS_INIT_HANDOVER_FD is not set"),
        (Some("nine"), "not a descriptor number above 2"),
        (Some("1"), "not a descriptor number above 2"),
        (Some("63"), "not an open descriptor"),
    ] {
        let r = bringup(&[], fd_env);
        assert_eq!(r.code, Some(2), "{fd_env:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{fd_env:?}: {}", r.stderr);
        assert_eq!(r.handover, "", "{fd_env:?}");
    }
}
