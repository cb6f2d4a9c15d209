//! End-to-end tests of what newer Docker (24 to 28) changes, on the real image and engine:
//! the MTU of every new inner network, ip6tables where it cannot work, daemon.json keys,
//! the workspace's own `iptables`, and doctor's view. Test names carry `mtu`, `ip6tables`
//! or `daemon_json` where CI runs them again on the sid image (Docker 28) by name filter.
//! Each checks what the image's dockerd version should do, so it also holds on older ones.

#[allow(dead_code)]
#[path = "e2e/support.rs"]
mod support;

use support::{docker, docker_ok, e2e, secs, unique, Container, Network};

/// The inner daemon's (major, minor), from `docker version`.
fn inner_version(c: &Container) -> (u32, u32) {
    let v = c.exec_ok(
        Some("workspace"),
        &["docker", "version", "--format", "{{.Server.Version}}"],
        secs(60),
    );
    let mut it = v.split(|ch: char| !ch.is_ascii_digit());
    let major = it.next().and_then(|m| m.parse().ok());
    let minor = it.next().and_then(|m| m.parse().ok());
    match (major, minor) {
        (Some(a), Some(b)) => (a, b),
        _ => c.fail(&format!("cannot read the inner version from {v:?}")),
    }
}

fn doctor_json(c: &Container) -> serde_json::Value {
    // doctor exits 1 when Docker is unavailable; its JSON is printed either way.
    let out = c.exec(None, &["ws-init", "doctor", "--json"], secs(60));
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        c.fail(&format!(
            "doctor --json is not JSON ({e}):\n{}",
            out.describe()
        ))
    })
}

/// The MTU of eth0 in an inner container on `network` (None: the default bridge).
fn inner_mtu(c: &Container, network: Option<&str>) -> String {
    let mut args = vec!["docker", "run", "--rm"];
    if let Some(n) = network {
        args.extend_from_slice(&["--network", n]);
    }
    args.extend_from_slice(&["wsbox", "cat", "/sys/class/net/eth0/mtu"]);
    c.exec_ok(Some("workspace"), &args, secs(120))
}

/// An outer network whose links have MTU 1400, removed when dropped.
fn outer_network_mtu_1400(name: &str) -> Network {
    let _ = docker(&["network", "rm", name], secs(30));
    docker_ok(
        &[
            "network",
            "create",
            "-o",
            "com.docker.network.driver.mtu=1400",
            name,
        ],
        secs(30),
    );
    Network {
        name: name.to_string(),
    }
}

#[test]
fn mtu_of_a_1400_link_reaches_the_default_bridge_and_user_defined_networks() {
    let Some(e) = e2e() else { return };
    let net = outer_network_mtu_1400(&unique("mtu1400"));
    let c = Container::workspace(e, &unique("mtu"), &["--network", &net.name]);
    c.wait_docker(120);
    c.import_busybox("wsbox");
    let version = inner_version(&c);
    // What compose does for each project: a user-defined bridge network.
    c.exec_ok(
        Some("workspace"),
        &["docker", "network", "create", "composelike"],
        secs(60),
    );
    let default_bridge = inner_mtu(&c, None);
    let user_defined = inner_mtu(&c, Some("composelike"));
    c.check(
        default_bridge == "1400",
        &format!("inner default bridge has MTU {default_bridge}, not 1400"),
    );
    if version >= (24, 0) {
        c.check(
            user_defined == "1400",
            &format!(
                "inner user-defined network has MTU {user_defined} on dockerd {}.{}, not 1400",
                version.0, version.1
            ),
        );
    } else {
        // Older daemons have no --default-network-opt: today's behaviour.
        c.check(
            user_defined == "1500",
            &format!("dockerd {version:?}: user-defined MTU {user_defined}"),
        );
    }
    // Doctor names the versions it found, and containerd's state is on the volume.
    let d = doctor_json(&c);
    let found = d["versions"]["dockerd"]["version"].as_str().unwrap_or("");
    c.check(
        found.starts_with(&format!("{}.{}.", version.0, version.1)),
        &format!("doctor's dockerd version {found:?} is not the daemon's {version:?}: {d}"),
    );
    for part in ["containerd", "runc"] {
        c.check(
            d["versions"][part]["version"].is_string(),
            &format!("doctor found no {part} version: {}", d["versions"]),
        );
    }
    c.check(
        d["containerd_storage_fs"] != "overlay"
            && c.exec(
                None,
                &["test", "-d", "/var/lib/docker/containerd/daemon"],
                secs(30),
            )
            .ok(),
        &format!("containerd's state: {}", d["containerd_storage_fs"]),
    );
}

/// A seccomp profile that lets everything through but IPv6 sockets (`socket(AF_INET6, ...)`
/// fails with EPERM): ip6tables-legacy then cannot reach the kernel's tables, as on hosts
/// without the ip6_tables modules, while IPv4 iptables works.
const NO_INET6_SECCOMP: &str = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["socket"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":10,"op":"SCMP_CMP_EQ"}]}]}"#;

#[test]
fn ip6tables_is_turned_off_with_one_line_where_it_cannot_work() {
    let Some(e) = e2e() else { return };
    let dir = support::host_dir("noinet6");
    let profile = dir.path().join("seccomp.json");
    std::fs::write(&profile, NO_INET6_SECCOMP).unwrap();
    let seccomp = format!("seccomp={}", profile.display());
    // --privileged would drop the seccomp profile: the near-privileged set with ours instead.
    let c = Container::start(
        &unique("ip6tables"),
        &[
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            &seccomp,
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "systempaths=unconfined",
            "-e",
            "WS_DOCKER_ENABLE_CLIENT=1",
            "-e",
            "DOCKER_IPTABLES_LEGACY=1",
        ],
        &e.image,
        &[],
    );
    c.wait_docker(120);
    let probe = c.exec(None, &["ip6tables-legacy", "-t", "nat", "-nL"], secs(30));
    c.check(
        !probe.ok(),
        "ip6tables-legacy works in this container: the test's premise does not hold",
    );
    let version = inner_version(&c);
    let d = doctor_json(&c);
    let dockerd_log = c.exec_ok(None, &["cat", "/var/log/dockerd.log"], secs(30));
    let logs = c.logs();
    if version >= (27, 0) {
        c.check(
            d["ip6tables"]["disable"] == true && d["ip6tables"]["ipv6_networks"] == false,
            &format!("doctor's ip6tables decision: {}", d["ip6tables"]),
        );
        c.check(
            logs.matches("dockerd gets --ip6tables=false").count() == 1,
            "ws-init does not say once that ip6tables is turned off",
        );
        c.check(
            !dockerd_log.contains("ip6tables is enabled, but cannot set up"),
            "dockerd still tries ip6tables",
        );
        let text = c.exec(None, &["ws-init", "doctor"], secs(60)).stdout;
        c.check(
            text.contains("IPv6 inner networks are unavailable"),
            &format!("doctor text:\n{text}"),
        );
    } else {
        c.check(
            d["ip6tables"]["disable"] == false
                && !logs.contains("--ip6tables=false")
                && !dockerd_log.contains("ip6tables is enabled"),
            &format!(
                "dockerd {version:?} leaves ip6tables off; ws-init must not add the flag: {}",
                d["ip6tables"]
            ),
        );
    }
    // IPv4 inner networking still works.
    c.import_busybox("wsbox");
    c.exec_ok(
        Some("workspace"),
        &["docker", "run", "--rm", "wsbox", "true"],
        secs(120),
    );
}

#[test]
fn daemon_json_with_mtu_and_hosts_starts_dockerd_on_its_socket() {
    let Some(e) = e2e() else { return };
    let dir = support::host_dir("daemonjson");
    let file = dir.path().join("daemon.json");
    std::fs::write(
        &file,
        r#"{"mtu": 1400, "hosts": ["unix:///run/docker-dj.sock"], "group": "docker"}"#,
    )
    .unwrap();
    let mount = format!("{}:/etc/docker/daemon.json:ro", file.display());
    // No DOCKER_HOST for the container: a unix:// one naming a missing socket means a remote
    // engine to ws-init. The CLI below is pointed at the socket per command.
    // WS_DOCKER_WAIT must follow that socket too, not wait 60 s for /var/run/docker.sock.
    let c = Container::workspace(
        e,
        &unique("daemonjson"),
        &["-v", &mount, "-e", "WS_DOCKER_WAIT=1"],
    );
    // Readiness follows daemon.json's socket: ws-init logs it.
    let ready = support::wait_for(secs(120), || {
        let l = c.logs();
        l.contains("dockerd ready").then_some(l)
    });
    let logs = ready.unwrap_or_else(|| c.fail("dockerd did not become ready"));
    c.check(
        logs.contains("/run/docker-dj.sock"),
        "ws-init did not wait on daemon.json's socket",
    );
    let started = support::wait_for(secs(20), || {
        c.logs()
            .contains("Docker answers: starting the main command (WS_DOCKER_WAIT)")
            .then_some(())
    });
    c.check(
        started.is_some(),
        &format!(
            "WS_DOCKER_WAIT did not see daemon.json's socket answer:\n{}",
            c.logs()
        ),
    );
    let dh = ["env", "DOCKER_HOST=unix:///run/docker-dj.sock"];
    let mut cmd: Vec<&str> = dh.to_vec();
    cmd.extend_from_slice(&[
        "docker",
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{index .Options \"com.docker.network.driver.mtu\"}}",
    ]);
    let mtu = c.exec_ok(Some("workspace"), &cmd, secs(60));
    c.check(mtu == "1400", &format!("default bridge MTU option {mtu:?}"));
    let ps = c.exec_ok(None, &["ps", "-o", "args=", "-C", "dockerd"], secs(30));
    c.check(
        !ps.contains("--mtu") && !ps.contains("--host") && !ps.contains("--group"),
        &format!("dockerd got a flag daemon.json sets: {ps}"),
    );
    let d = doctor_json(&c);
    c.check(
        d["daemon_json"]["keys"] == serde_json::json!(["group", "hosts", "mtu"]),
        &format!("doctor's daemon_json: {}", d["daemon_json"]),
    );
}

#[test]
fn daemon_json_malformed_is_named_by_doctor_run_as_the_image_command() {
    let Some(e) = e2e() else { return };
    let dir = support::host_dir("badjson");
    let file = dir.path().join("daemon.json");
    std::fs::write(&file, "{\"mtu\": 1400,}\n").unwrap();
    let mount = format!("{}:/etc/docker/daemon.json:ro", file.display());
    // A newcomer's first try: doctor as the image's command. PID 1 (root) runs it itself.
    let mut args = vec!["run", "--rm"];
    args.extend(e.privileged.iter().map(String::as_str));
    args.extend_from_slice(&[
        "-e",
        "WS_DOCKER_ENABLE_CLIENT=1",
        "-v",
        &mount,
        &e.image,
        "ws-init",
        "doctor",
    ]);
    let out = docker(&args, secs(120));
    let text = &out.stdout;
    assert!(
        text.contains("root           yes") && !text.contains("not root"),
        "doctor did not report PID 1's view:\n{}",
        out.describe()
    );
    assert!(
        text.contains("/etc/docker/daemon.json cannot be used: it is not valid JSON")
            && text.contains("fix or remove /etc/docker/daemon.json"),
        "{}",
        out.describe()
    );
    assert!(
        !out.stderr.contains("started \"ws-init\""),
        "doctor ran as a main command:\n{}",
        out.describe()
    );
}

#[test]
fn doctor_as_the_image_command_of_a_plain_run_prints_each_fix_once() {
    let Some(e) = e2e() else { return };
    let out = docker(
        &[
            "run",
            "--rm",
            "-e",
            "WS_DOCKER_ENABLE_CLIENT=1",
            &e.image,
            "ws-init",
            "doctor",
        ],
        secs(120),
    );
    let text = &out.stdout;
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        text.contains("root           yes") && !text.contains("uid 1000"),
        "{}",
        out.describe()
    );
    assert_eq!(
        text.matches("fix: any of:").count(),
        1,
        "{}",
        out.describe()
    );
}

#[test]
fn iptables_command_of_the_workspace_shows_dockerds_legacy_rules() {
    let Some(e) = e2e() else { return };
    let c = Container::workspace(e, &unique("iptalt"), &["-e", "DOCKER_IPTABLES_LEGACY=1"]);
    c.wait_docker(120);
    let version = c.exec_ok(None, &["iptables", "--version"], secs(30));
    c.check(
        version.contains("legacy"),
        &format!("the workspace's iptables is {version:?}, dockerd's is legacy"),
    );
    let rules = c.exec_ok(None, &["iptables", "-S"], secs(30));
    c.check(
        rules.contains("-N DOCKER"),
        &format!("`iptables -S` shows no DOCKER chain:\n{rules}"),
    );
}
