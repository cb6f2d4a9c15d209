//! `ws-init start-docker` run as the real binary: the refusals a user can cause, each with one
//! message naming the cause. (The bring-up itself runs on the real engine in
//! tests/e2e_devcontainer.rs: it mounts and starts dockerd, which a host must not get.)

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;

fn start_docker(env: &[(&str, &str)], uid: Option<u32>) -> (i32, String) {
    let mut cmd = Command::new(common::ws_init());
    cmd.args(["start-docker", "--timeout", "5"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().expect("run ws-init");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn start_docker_with_docker_off_starts_nothing() {
    let (code, err) = start_docker(&[], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("WS_DOCKER_ENABLE_CLIENT is off"), "{err}");
}

#[test]
fn start_docker_refuses_a_non_root_user_with_the_fix() {
    if !common::root_or_skip("start_docker_refuses_a_non_root_user_with_the_fix") {
        return;
    }
    let (code, err) = start_docker(&[("WS_DOCKER_ENABLE_CLIENT", "1")], Some(65534));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("needs root (running as uid 65534)") && err.contains("containerUser"),
        "{err}"
    );
}

#[test]
fn start_docker_refuses_bad_arguments() {
    let (code, err) = start_docker(&[("WS_DOCKER_ENABLE_CLIENT", "bogus")], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("WS_DOCKER_ENABLE_CLIENT"), "{err}");
    let out = Command::new(common::ws_init())
        .args(["start-docker", "--wait"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("start-docker: unexpected arguments"));
}
