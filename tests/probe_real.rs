//! Probe this real machine (root, cgroup v1 hybrid, outer Docker running) and
//! check the answers against independent sources: the caps crate, the kernel's
//! own files, and a docker CLI call.

use std::path::Path;

use ws_init::bringup::probe_system;
use ws_init::config::Settings;
use ws_init::plan::{make_plan, next_iptables_check};
use ws_init::probe::{CgroupLayout, Ping};

fn enabled() -> Settings {
    Settings {
        docker_enable_client: true,
        ..Settings::default()
    }
}

#[test]
fn real_system_probe_is_consistent() {
    let s = enabled();
    let p = probe_system(&s);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert!(
        p.mounts.mount_at(Path::new("/")).is_some(),
        "no / in mountinfo"
    );
    assert_eq!(p.euid, Some(nix::unistd::geteuid().as_raw()));

    let eff = caps::read(None, caps::CapSet::Effective).unwrap();
    for cap in caps::all() {
        assert_eq!(p.caps.has(cap), eff.contains(&cap), "{cap}");
    }
    assert_eq!(p.caps.effective_names.len(), eff.len());

    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(p.cgroups.layout == CgroupLayout::Unified, unified);
    if !unified && Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        assert_eq!(p.cgroups.layout, CgroupLayout::Hybrid);
    }

    let route = std::fs::read_to_string("/proc/net/route").unwrap();
    if route
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some("00000000"))
    {
        let ifname = p
            .net
            .default_route_interface
            .clone()
            .expect("default route interface");
        let mtu: u32 = std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(p.net.default_route_mtu, Some(mtu));
    }

    // The lazy iptables checks ran as far as the plan needed.
    assert_eq!(next_iptables_check(&p, &s), None);
    let plan = make_plan(&p, &s);
    if plan.mode.starts_dockerd() {
        assert!(
            plan.iptables
                .as_ref()
                .is_some_and(|d| !d.reason.contains("not checked")),
            "{:?}",
            plan.iptables
        );
    }
}

#[test]
fn real_docker_socket_answers_when_the_engine_does() {
    let sock = Path::new("/var/run/docker.sock");
    if !sock.exists() {
        eprintln!("skipped: no /var/run/docker.sock on this machine");
        return;
    }
    let engine_up = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    let p = probe_system(&enabled());
    assert!(p.docker_socket.is_socket);
    assert_eq!(
        p.docker_socket.answers(),
        engine_up,
        "{:?}",
        p.docker_socket.ping
    );
    if engine_up {
        assert_eq!(p.docker_socket.ping, Ping::Answered);
    }
}
