//! End-to-end checks of issue 12 on the real image: what ws-init does as root
//! is not steered by the caller's PATH, and the workspace user can read the
//! dockerd log every dockerd error points to.

#[allow(dead_code)]
#[path = "e2e/support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use support::*;

/// `PATH` names a directory with a `dockerd` and an `iptables` of its own:
/// ws-init runs neither (it resolves both from its fixed, root-only search
/// path and logs them), and the workspace user reads `/var/log/dockerd.log`
/// (`root:docker 0640`).
#[test]
fn path_is_not_used_as_root_and_the_log_is_readable_by_the_docker_group() {
    let Some(e) = e2e() else { return };
    let evil = host_dir("evil-path");
    for name in ["dockerd", "iptables", "iptables-legacy"] {
        let p = evil.path().join(name);
        std::fs::write(&p, "#!/bin/sh\ntouch /tmp/from-path-ran\nexit 1\n").unwrap();
        std::fs::set_permissions(&p, PermissionsExt::from_mode(0o755)).unwrap();
    }
    let mount = format!("{}:/evil:ro", evil.path().display());
    let ws = Container::workspace(
        e,
        &unique("path"),
        &[
            "-v",
            &mount,
            "-e",
            "PATH=/evil:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ],
    );
    ws.wait_docker(90);
    let ran = ws.exec(None, &["test", "-e", "/tmp/from-path-ran"], secs(30));
    ws.check(
        !ran.ok(),
        "a program from the caller's PATH was run as root",
    );
    let logs = ws.logs();
    ws.check(
        logs.contains("programs run as root") && logs.contains("dockerd=/usr/"),
        &format!("the resolved dockerd is not logged:\n{logs}"),
    );
    let mode = ws.exec_ok(
        None,
        &["stat", "-c", "%U:%G %a", "/var/log/dockerd.log"],
        secs(30),
    );
    ws.check(
        mode == "root:docker 640",
        &format!("dockerd.log is {mode:?}, want \"root:docker 640\""),
    );
    let head = ws.sh_ok("grep -c 'Starting up' /var/log/dockerd.log", secs(30));
    ws.check(
        head != "0",
        "the workspace user read no dockerd start in the log",
    );
}
