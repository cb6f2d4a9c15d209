//! Every decision, on the captured (and the documented hand-written) fixture trees.

use super::*;
use crate::probe::{probe_root, ProbeEnv, SystemProbe};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

pub(crate) fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case)
}

pub(crate) fn env() -> ProbeEnv {
    ProbeEnv {
        path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    }
}

pub(crate) fn enabled() -> Settings {
    Settings {
        docker_enable_client: true,
        ..Settings::default()
    }
}

pub(crate) fn probe(case: &str, s: &Settings) -> SystemProbe {
    probe_root(&fixture(case), s, env())
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// A copy of the fixture tree with a real listening socket at /var/run/docker.sock.
pub(crate) fn with_socket(case: &str) -> (tempfile::TempDir, UnixListener) {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&fixture(case), t.path());
    std::fs::create_dir_all(t.path().join("var/run")).unwrap();
    let l = UnixListener::bind(t.path().join("var/run/docker.sock")).unwrap();
    (t, l)
}

fn steps(plan: &Plan) -> Vec<&Step> {
    plan.steps.iter().map(|s| &s.step).collect()
}

#[test]
fn disabled_means_nothing_at_all() {
    let p = probe("docker-near-privileged", &Settings::default());
    let plan = make_plan(&p, &Settings::default());
    assert_eq!(plan.mode, DockerMode::Disabled);
    assert!(plan.steps.is_empty() && plan.dockerd.is_none() && plan.warnings.is_empty());
    assert_eq!(next_iptables_check(&p, &Settings::default()), None);
}

#[test]
fn plain_docker_run_is_impossible_with_every_way_out() {
    for case in ["docker-plain", "docker-plain-v2"] {
        let p = probe(case, &enabled());
        let DockerMode::Impossible {
            reasons,
            suggestions,
        } = decide_mode(&p, &enabled())
        else {
            panic!("{case}: {:?}", decide_mode(&p, &enabled()))
        };
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("CAP_SYS_ADMIN and CAP_NET_ADMIN")),
            "{reasons:?}"
        );
        let all = suggestions.join("\n");
        for needle in [
            "--privileged",
            "--runtime=sysbox-runc",
            "-v /var/run/docker.sock:/var/run/docker.sock",
            "DOCKER_HOST=",
        ] {
            assert!(all.contains(needle), "{case}: {needle} missing in {all}");
        }
        let plan = make_plan(&p, &enabled());
        assert!(plan.dockerd.is_none() && plan.steps.is_empty());
        assert_eq!(
            next_iptables_check(&p, &enabled()),
            None,
            "no iptables run when nothing starts"
        );
    }
    let p = probe("docker-plain-v2", &enabled());
    let DockerMode::Impossible { reasons, .. } = decide_mode(&p, &enabled()) else {
        panic!()
    };
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("AppArmor") && r.contains("docker-default")),
        "{reasons:?}"
    );
}

#[test]
fn near_privileged_on_hybrid_v1_remounts_cgroups_and_makes_root_shared() {
    let s = enabled();
    let p = probe("docker-near-privileged", &s);
    assert_eq!(p.caps.level, CapLevel::NearPrivileged);
    let plan = make_plan(&p, &s);
    assert_eq!(
        plan.mode,
        DockerMode::InnerDaemon {
            privilege: Privilege::NearPrivileged
        }
    );
    let st = steps(&plan);
    let Some(Step::RemountCgroupV1Rw { mount_points }) = st
        .iter()
        .find(|s| matches!(s, Step::RemountCgroupV1Rw { .. }))
    else {
        panic!("{st:?}")
    };
    assert_eq!(mount_points.len(), 9);
    assert!(mount_points.contains(&PathBuf::from("/sys/fs/cgroup/memory")));
    assert!(
        st.contains(&&Step::MakeRootRshared),
        "root is master:2, not shared"
    );
    assert!(st.contains(&&Step::MountSecurityfs));
    // The fixture has no /etc/passwd: nobody to add.
    assert!(st.contains(&&Step::EnsureDockerGroup {
        gid: 999,
        member: None
    }));
    assert!(!st
        .iter()
        .any(|s| matches!(s, Step::CgroupV2Evacuate { .. })));
    assert!(plan
        .steps
        .iter()
        .all(|s| !s.optional || s.step == Step::MountSecurityfs));
    // /var/lib/docker on the container's overlay: warned, with the volume fix.
    let w = plan
        .warnings
        .iter()
        .find(|w| w.message.contains("overlay"))
        .expect("overlay warning");
    assert!(w
        .fix
        .as_deref()
        .unwrap()
        .contains("-v ws-docker:/var/lib/docker"));
    assert!(plan
        .warnings
        .iter()
        .any(|w| w.message.contains("/lib/modules")));
    // seccomp is unconfined in that flag set: no seccomp warning.
    assert!(!plan.warnings.iter().any(|w| w.message.contains("seccomp")));
}

#[test]
fn volume_on_var_lib_docker_silences_the_overlay_warning() {
    let p = probe("docker-near-privileged-volume", &enabled());
    assert_eq!(p.docker_storage.fs_type.as_deref(), Some("ext4"));
    assert!(p.docker_storage.is_mount_point);
    let plan = make_plan(&p, &enabled());
    assert!(
        !plan.warnings.iter().any(|w| w.message.contains("overlay")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn privileged_v2_evacuates_root_cgroup_and_sets_mtu() {
    let s = enabled();
    let p = probe("docker-privileged-v2", &s);
    assert_eq!(p.cgroups.layout, CgroupLayout::Unified);
    let plan = make_plan(&p, &s);
    assert_eq!(
        plan.mode,
        DockerMode::InnerDaemon {
            privilege: Privilege::Full
        }
    );
    let ev = plan
        .steps
        .iter()
        .find(|s| matches!(s.step, Step::CgroupV2Evacuate { .. }))
        .unwrap();
    assert!(!ev.optional);
    assert_eq!(
        ev.step,
        Step::CgroupV2Evacuate {
            root: "/sys/fs/cgroup".into(),
            init: "/sys/fs/cgroup/init".into(),
            controllers: "cpuset cpu io memory hugetlb pids rdma misc"
                .split(' ')
                .map(String::from)
                .collect(),
        }
    );
    assert!(!steps(&plan).iter().any(|s| matches!(
        s,
        Step::RemountCgroup2Rw { .. } | Step::RemountCgroupV1Rw { .. }
    )));
    let d = plan.dockerd.unwrap();
    assert!(d.args.contains(&"--mtu=1450".to_string()), "{:?}", d.args);
    // Everything delegated and nobody left in the root: nothing to evacuate.
    let mut p2 = p.clone();
    let root = p2.cgroups.v2_root.as_mut().unwrap();
    root.root_procs = 0;
    root.subtree_control = root.controllers.clone();
    assert!(!steps(&make_plan(&p2, &s))
        .iter()
        .any(|s| matches!(s, Step::CgroupV2Evacuate { .. })));
}

#[test]
fn sysbox_is_detected_before_the_capability_test_and_skips_evacuation() {
    let s = enabled();
    let p = probe("sysbox-v2", &s);
    assert_eq!(
        p.caps.level,
        CapLevel::Full,
        "the capability test alone would say privileged"
    );
    assert!(p.sysboxfs_mounts.contains(&PathBuf::from("/proc/sys")));
    let plan = make_plan(&p, &s);
    assert_eq!(plan.mode, DockerMode::Sysbox);
    assert!(!steps(&plan)
        .iter()
        .any(|s| matches!(s, Step::CgroupV2Evacuate { .. })));
    let shared = plan
        .steps
        .iter()
        .find(|s| s.step == Step::MakeRootRshared)
        .unwrap();
    assert!(shared.optional, "mount failures are not fatal under sysbox");
    assert!(!plan
        .warnings
        .iter()
        .any(|w| w.message.contains("user namespace") || w.message.contains("seccomp")));
    assert!(plan.dockerd.is_some());
}

#[test]
fn mounted_host_socket_gets_its_group_even_when_it_does_not_answer() {
    let s = enabled();
    let (t, _l) = with_socket("docker-host-socket-ro");
    let p = probe_root(t.path(), &s, env());
    assert!(p.docker_socket.is_socket && p.docker_socket.is_mount_point);
    assert_eq!(p.docker_socket.mount_read_only, Some(true));
    let plan = make_plan(&p, &s);
    let gid = p.docker_socket.gid.unwrap();
    // The test socket is ours (root's group when running as root); pretend the host's gid for the step.
    match &plan.mode {
        DockerMode::HostSocket {
            path,
            read_only,
            answers,
            ..
        } => {
            assert_eq!(path, Path::new("/var/run/docker.sock"));
            assert!(*read_only && !answers);
        }
        m => panic!("{m:?}"),
    }
    assert!(plan.dockerd.is_none());
    assert!(plan
        .warnings
        .iter()
        .any(|w| w.message.contains("does not answer")));
    let mut p105 = p.clone();
    p105.docker_socket.gid = Some(105);
    p105.docker_socket.mode = Some(0o660);
    let plan = make_plan(&p105, &s);
    assert_eq!(
        steps(&plan),
        [&Step::AddUserToSocketGroup {
            gid: 105,
            member: None
        }]
    );
    let _ = gid;
}

#[test]
fn host_socket_owned_by_root_group_is_not_joined() {
    let s = enabled();
    let (t, _l) = with_socket("docker-host-socket-ro");
    let mut p = probe_root(t.path(), &s, env());
    p.docker_socket.gid = Some(0);
    p.docker_socket.mode = Some(0o660);
    let plan = make_plan(&p, &s);
    assert!(plan.steps.is_empty());
    assert!(plan.warnings.iter().any(|w| w.message.contains("group 0")));
}

#[test]
fn not_root_with_host_socket_suggests_group_add() {
    let s = enabled();
    let (t, _l) = with_socket("docker-user-1000");
    let mut p = probe_root(t.path(), &s, env());
    assert_eq!(p.euid, Some(1000));
    p.docker_socket.gid = Some(105);
    p.docker_socket.mode = Some(0o660);
    let plan = make_plan(&p, &s);
    assert!(matches!(plan.mode, DockerMode::HostSocket { gid: 105, .. }));
    assert!(plan.steps.is_empty(), "nothing that needs root");
    let w = plan
        .warnings
        .iter()
        .find(|w| w.message.contains("not root"))
        .unwrap();
    assert!(w.fix.as_deref().unwrap().contains("--group-add 105"));
    // Already in the group (docker run --group-add 105): no warning.
    p.groups.push(105);
    assert!(make_plan(&p, &s)
        .warnings
        .iter()
        .all(|w| !w.message.contains("not root")));
}

#[test]
fn not_root_without_socket_is_impossible_and_says_so() {
    let p = probe("docker-user-1000", &enabled());
    // The fixture's socket file is absent from git: no host socket here.
    let DockerMode::Impossible {
        reasons,
        suggestions,
    } = decide_mode(&p, &enabled())
    else {
        panic!()
    };
    assert!(reasons[0].contains("uid 1000"), "{reasons:?}");
    assert!(suggestions[0].contains("as root"));
}

#[test]
fn stale_socket_of_our_own_dockerd_is_not_a_host_socket() {
    // After `docker restart` the socket file from our earlier inner dockerd is still there:
    // not a mount point, nobody answers -> inner daemon again.
    let s = enabled();
    let (t, l) = with_socket("docker-near-privileged");
    drop(l);
    let p = probe_root(t.path(), &s, env());
    assert!(
        p.docker_socket.is_socket && !p.docker_socket.is_mount_point && !p.docker_socket.answers()
    );
    assert!(matches!(
        decide_mode(&p, &s),
        DockerMode::InnerDaemon { .. }
    ));
}

#[test]
fn answering_unmounted_socket_is_the_host_only_when_no_dockerd_of_ours_runs() {
    let s = enabled();
    let mut p = probe("docker-near-privileged", &s);
    p.docker_socket.is_socket = true;
    p.docker_socket.exists = true;
    p.docker_socket.gid = Some(2000);
    p.docker_socket.ping = crate::probe::Ping::Answered;
    assert!(matches!(
        decide_mode(&p, &s),
        DockerMode::HostSocket {
            gid: 2000,
            answers: true,
            ..
        }
    ));
    p.dockerd_pids = vec![42];
    assert!(matches!(
        decide_mode(&p, &s),
        DockerMode::InnerDaemon { .. }
    ));
}

#[test]
fn docker_host_kinds() {
    let p = probe("docker-plain", &enabled());
    let mode = |host: &str, tls: bool| {
        let s = Settings {
            docker_host: Some(DockerHost::parse(host, tls).unwrap()),
            docker_tls_verify: tls,
            ..enabled()
        };
        decide_mode(&p, &s)
    };
    let kind = |m: DockerMode| match m {
        DockerMode::Remote { kind, .. } => kind,
        m => panic!("{m:?}"),
    };
    assert_eq!(kind(mode("tcp://build:2375", false)), RemoteKind::Tcp);
    assert_eq!(kind(mode("tcp://build:2375", true)), RemoteKind::TcpTls);
    assert_eq!(kind(mode("tcp://build:2376", false)), RemoteKind::TcpTls);
    assert_eq!(kind(mode("ssh://me@build", false)), RemoteKind::Ssh);
    assert_eq!(
        kind(mode("unix:///run/other.sock", false)),
        RemoteKind::Unix
    );
    // Our own socket path in DOCKER_HOST is like no DOCKER_HOST.
    assert!(matches!(
        mode("unix:///var/run/docker.sock", false),
        DockerMode::Impossible { .. }
    ));
    let s = Settings {
        docker_host: Some(DockerHost::parse("unix:///run/other.sock", false).unwrap()),
        ..enabled()
    };
    let plan = make_plan(&p, &s);
    assert!(plan.warnings[0].message.contains("names no socket"));
}

#[test]
fn unix_docker_host_pointing_at_a_socket_is_host_socket_mode() {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&fixture("docker-plain"), t.path());
    std::fs::create_dir_all(t.path().join("run/host")).unwrap();
    let _l = UnixListener::bind(t.path().join("run/host/docker.sock")).unwrap();
    let s = Settings {
        docker_host: Some(DockerHost::parse("unix:///run/host/docker.sock", false).unwrap()),
        ..enabled()
    };
    let p = probe_root(t.path(), &s, env());
    assert!(
        matches!(decide_mode(&p, &s), DockerMode::HostSocket { ref path, .. } if path == Path::new("/run/host/docker.sock"))
    );
}

#[test]
fn iptables_checks_are_requested_lazily_and_feed_the_plan() {
    let s = enabled();
    let mut p = probe("docker-near-privileged", &s);
    assert_eq!(next_iptables_check(&p, &s), Some(IptablesTool::Default));
    p.iptables.nft_works = Some(false);
    assert_eq!(next_iptables_check(&p, &s), Some(IptablesTool::Legacy));
    p.iptables.legacy_works = Some(true);
    assert_eq!(next_iptables_check(&p, &s), None);
    // Legacy chosen: its version is probed once, for the log, and carried by the step.
    assert!(wants_iptables_legacy_version(&p, &s));
    p.iptables.legacy_version = Some(Ok("iptables v1.8.9 (legacy)".into()));
    assert!(!wants_iptables_legacy_version(&p, &s));
    // The link targets come from the probe (root-only binaries), as they are.
    p.iptables.legacy_links = vec![
        ("iptables".into(), Ok("/usr/sbin/iptables-legacy".into())),
        ("ip6tables".into(), Err("ip6tables-legacy not found".into())),
    ];
    let plan = make_plan(&p, &s);
    assert_eq!(
        plan.iptables.as_ref().unwrap().backend,
        IptablesBackend::Legacy
    );
    assert!(steps(&plan).contains(&&Step::IptablesLegacyLinks {
        dir: LEGACY_LINK_DIR.into(),
        version: Some(Ok("iptables v1.8.9 (legacy)".into())),
        links: p.iptables.legacy_links.clone(),
    }));
    let d = plan.dockerd.unwrap();
    assert!(d.iptables_legacy);
    let path = &d.env.iter().find(|(k, _)| k == "PATH").unwrap().1;
    assert!(
        path.starts_with(&format!("{LEGACY_LINK_DIR}:/usr/local/sbin")),
        "{path}"
    );
    // --iptables=false from the user: nothing to check, no decision.
    let s2 = Settings {
        dockerd_args: vec!["--iptables=false".into()].into(),
        ..enabled()
    };
    let p = probe("docker-near-privileged", &s2);
    assert_eq!(next_iptables_check(&p, &s2), None);
    assert!(!wants_iptables_legacy_version(&p, &s2));
    assert!(make_plan(&p, &s2).iptables.is_none());
}

#[test]
fn dockerd_command_line() {
    let s = enabled();
    let p = probe("docker-near-privileged", &s);
    let d = make_plan(&p, &s).dockerd.unwrap();
    assert_eq!(d.program, Path::new("dockerd"));
    assert_eq!(d.socket, Path::new("/var/run/docker.sock"));
    assert_eq!(
        d.args,
        [
            "--host=unix:///var/run/docker.sock",
            "--group=docker",
            "--shutdown-timeout=4"
        ]
    );
    assert!(d.env.contains(&("container".into(), "docker".into())));
    assert!(d.tls_dir.is_none());

    let tls = Settings {
        tls: TlsSetting::CertDir("/certs".into()),
        tls_san: vec!["DNS:ws.example".into()],
        stop_timeout: Duration::from_secs(2),
        dockerd_args: vec!["--debug".into(), "--shutdown-timeout".into(), "30".into()].into(),
        ..enabled()
    };
    let mut p = p;
    p.hostname = "ws".into();
    p.interface_ips = vec!["127.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()];
    let plan = make_plan(&p, &tls);
    let d = plan.dockerd.as_ref().unwrap();
    assert_eq!(
        d.args,
        [
            "--host=unix:///var/run/docker.sock",
            "--group=docker",
            "--host=tcp://0.0.0.0:2376",
            "--tlsverify",
            "--tlscacert=/certs/server/ca.pem",
            "--tlscert=/certs/server/cert.pem",
            "--tlskey=/certs/server/key.pem",
            "--debug",
            "--shutdown-timeout",
            "30",
        ]
    );
    assert_eq!(d.tls_dir.as_deref(), Some(Path::new("/certs")));
    assert!(steps(&plan).contains(&&Step::GenerateTls {
        dir: "/certs".into(),
        extra_sans: vec!["DNS:ws.example".into()],
        hostname: "ws".into(),
        ips: vec!["127.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()],
    }));

    let plain = Settings {
        tls: TlsSetting::PlainTcp,
        ..enabled()
    };
    let plan = make_plan(&p, &plain);
    let args = &plan.dockerd.as_ref().unwrap().args;
    assert!(
        args.contains(&"--host=tcp://0.0.0.0:2375".to_string())
            && args.contains(&"--tls=false".to_string())
    );
    assert!(plan
        .warnings
        .iter()
        .any(|w| w.message.contains("without authentication")));

    assert_eq!(shutdown_timeout_secs(Duration::from_secs(8)), 4);
    assert_eq!(shutdown_timeout_secs(Duration::from_secs(60)), 43);
    assert_eq!(shutdown_timeout_secs(Duration::from_millis(2500)), 1);
}

#[test]
fn mtu_flag_only_below_1500_and_only_if_the_user_gave_none() {
    let s = enabled();
    let mut p = probe("docker-near-privileged", &s);
    p.net.default_route_mtu = Some(1400);
    assert!(make_plan(&p, &s)
        .dockerd
        .unwrap()
        .args
        .contains(&"--mtu=1400".to_string()));
    let user = Settings {
        dockerd_args: vec!["--mtu=1300".into()].into(),
        ..enabled()
    };
    let args = make_plan(&p, &user).dockerd.unwrap().args;
    assert_eq!(args.iter().filter(|a| a.starts_with("--mtu")).count(), 1);
    p.net.default_route_mtu = Some(9000);
    assert!(!make_plan(&p, &s)
        .dockerd
        .unwrap()
        .args
        .iter()
        .any(|a| a.starts_with("--mtu")));
}

#[test]
fn stale_pid_files_are_removed_but_a_live_dockerds_are_kept() {
    let s = enabled();
    let mut p = probe("docker-near-privileged", &s);
    p.pid_files = vec![
        crate::probe::PidFile {
            path: "/run/docker.pid".into(),
            pid: Some(77),
            running: None,
        },
        crate::probe::PidFile {
            path: "/run/docker/containerd/containerd.pid".into(),
            pid: Some(1),
            running: Some("ws-init".into()),
        },
        crate::probe::PidFile {
            path: "/var/run/docker-live.pid".into(),
            pid: Some(9),
            running: Some("dockerd".into()),
        },
    ];
    let plan = make_plan(&p, &s);
    assert_eq!(
        plan.steps[0].step,
        Step::RemoveStalePidFiles {
            files: vec![
                "/run/docker.pid".into(),
                "/run/docker/containerd/containerd.pid".into()
            ]
        }
    );
}

#[test]
fn host_hybrid_v1_layout() {
    let p = probe("host-hybrid-v1", &enabled());
    assert_eq!(p.cgroups.layout, CgroupLayout::Hybrid);
    assert!(p.cgroups.v1_read_only.is_empty());
    assert_eq!(
        p.cgroups.cgroup2_mounts,
        [PathBuf::from("/sys/fs/cgroup/unified")]
    );
    assert_eq!(p.caps.missing, ["CAP_SYS_RESOURCE"]);
    assert_eq!(p.net.default_route_interface.as_deref(), Some("eth0"));
    // The VM's own link is 1400: an inner dockerd here gets --mtu.
    assert_eq!(p.net.default_route_mtu, Some(1400));
    assert!(!p.userns.in_user_namespace);
    let plan = make_plan(&p, &enabled());
    assert!(plan
        .dockerd
        .as_ref()
        .unwrap()
        .args
        .contains(&"--mtu=1400".to_string()));
    assert!(matches!(
        plan.mode,
        DockerMode::InnerDaemon {
            privilege: Privilege::NearPrivileged
        }
    ));
    assert!(!steps(&plan)
        .iter()
        .any(|s| matches!(s, Step::RemountCgroupV1Rw { .. })));
}

#[test]
fn host_cgroupns_evacuates_our_own_cgroup_and_nests_inner_containers_below_it() {
    let s = enabled();
    let p = probe("docker-privileged-v2-hostns", &s);
    let v2 = p.cgroups.v2_root.as_ref().unwrap();
    assert_eq!(v2.relative, "/docker/b712f1c4");
    assert_eq!(
        v2.root_procs, 2,
        "our two processes, not the host's pid-0 entries"
    );
    let plan = make_plan(&p, &s);
    let ev = plan
        .steps
        .iter()
        .find_map(|s| match &s.step {
            Step::CgroupV2Evacuate { root, init, .. } => Some((root.clone(), init.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        ev,
        (
            "/sys/fs/cgroup/docker/b712f1c4".into(),
            "/sys/fs/cgroup/docker/b712f1c4/init".into()
        )
    );
    let args = plan.dockerd.unwrap().args;
    assert!(
        args.contains(&"--cgroup-parent=/docker/b712f1c4".to_string()),
        "{args:?}"
    );
    // A private namespace keeps dockerd's default parent.
    let private = make_plan(&probe("docker-privileged-v2", &s), &s);
    assert!(!private
        .dockerd
        .unwrap()
        .args
        .iter()
        .any(|a| a.starts_with("--cgroup-parent")));
}

#[test]
fn apparmor_on_without_its_parser_is_named_with_the_fix() {
    let s = enabled();
    let mut p = probe("docker-privileged-v2", &s);
    assert!(!p.apparmor_kernel, "fixture has no AppArmor");
    let has_warning = |p: &SystemProbe| {
        make_plan(p, &s).warnings.iter().any(|w| {
            w.message.contains("apparmor_parser")
                && w.fix.as_deref().is_some_and(|f| f.contains("apparmor"))
        })
    };
    assert!(!has_warning(&p));
    p.apparmor_kernel = true;
    p.apparmor_parser = false;
    assert!(has_warning(&p));
    p.apparmor_parser = true;
    assert!(!has_warning(&p));
}

fn with_dockerd(p: &mut SystemProbe, version: &str) {
    p.versions.dockerd = crate::probe::ComponentVersion {
        binary: Some("/usr/sbin/dockerd".into()),
        package: Some("docker.io".into()),
        version: Some(version.into()),
    };
}

fn args_of(p: &SystemProbe, s: &Settings) -> Vec<String> {
    make_plan(p, s).dockerd.unwrap().args
}

const NET_MTU_1400: &str = "--default-network-opt=bridge=com.docker.network.driver.mtu=1400";

#[test]
fn mtu_reaches_new_networks_from_dockerd_24_on() {
    let s = enabled();
    let mut p = probe("docker-near-privileged", &s);
    p.net.default_route_mtu = Some(1400);
    with_dockerd(&mut p, "26.1.5+dfsg1-9+deb13u1+b1");
    let args = args_of(&p, &s);
    assert!(
        args.contains(&"--mtu=1400".to_string()) && args.contains(&NET_MTU_1400.to_string()),
        "{args:?}"
    );
    // 20.10 has no --default-network-opt: today's behaviour.
    with_dockerd(&mut p, "20.10.24+dfsg1-1+b3");
    let args = args_of(&p, &s);
    assert!(args.contains(&"--mtu=1400".to_string()));
    assert!(
        !args.iter().any(|a| a.starts_with("--default-network-opt")),
        "{args:?}"
    );
    // Unknown version: the same, and doctor says why.
    p.versions.dockerd = Default::default();
    p.versions.dockerd.binary = Some("/usr/local/bin/dockerd".into());
    let plan = make_plan(&p, &s);
    assert!(!plan
        .dockerd
        .unwrap()
        .args
        .iter()
        .any(|a| a.starts_with("--default-network-opt")));
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("/usr/local/bin/dockerd") && n.contains("MTU")),
        "{:?}",
        plan.notes
    );
    assert!(plan.warnings.iter().all(|w| !w.message.contains("version")));
    // The user's --mtu reaches new networks too, even on a 1500 link.
    with_dockerd(&mut p, "28.5.2+dfsg4");
    p.net.default_route_mtu = Some(1500);
    let user = Settings {
        dockerd_args: vec!["--mtu".into(), "1300".into()].into(),
        ..enabled()
    };
    let args = args_of(&p, &user);
    assert!(
        args.contains(
            &"--default-network-opt=bridge=com.docker.network.driver.mtu=1300".to_string()
        ),
        "{args:?}"
    );
    assert!(args_of(&p, &s).iter().all(|a| !a.contains("mtu")));
    // The user's own option for it wins.
    let own = Settings {
        dockerd_args: vec![
            "--default-network-opt=bridge=com.docker.network.driver.mtu=1200".into(),
        ]
        .into(),
        ..enabled()
    };
    p.net.default_route_mtu = Some(1400);
    let args = args_of(&p, &own);
    assert_eq!(
        args.iter().filter(|a| a.contains("driver.mtu")).count(),
        1,
        "{args:?}"
    );
}

#[test]
fn ip6tables_is_checked_only_where_dockerd_turns_it_on_and_turned_off_when_it_fails() {
    let s = enabled();
    let mut p = probe("docker-near-privileged", &s);
    p.iptables.nft_works = Some(true);
    with_dockerd(&mut p, "26.1.5+dfsg1-9");
    assert_eq!(next_iptables_check(&p, &s), None, "26 leaves ip6tables off");
    with_dockerd(&mut p, "28.5.2+dfsg4");
    assert_eq!(next_iptables_check(&p, &s), Some(IptablesTool::Ip6Default));
    p.iptables.ip6_nft_works = Some(true);
    assert_eq!(next_iptables_check(&p, &s), None);
    let plan = make_plan(&p, &s);
    assert!(!plan.ip6tables.as_ref().unwrap().disable);
    assert!(!plan
        .dockerd
        .unwrap()
        .args
        .iter()
        .any(|a| a.contains("ip6tables")));
    p.iptables.ip6_nft_works = Some(false);
    let plan = make_plan(&p, &s);
    let d = plan.ip6tables.as_ref().unwrap();
    assert!(d.disable && d.ipv6_networks == Some(false), "{d:?}");
    assert!(plan
        .dockerd
        .as_ref()
        .unwrap()
        .args
        .contains(&"--ip6tables=false".to_string()));
    let w: Vec<_> = plan
        .warnings
        .iter()
        .filter(|w| w.message.contains("ip6tables"))
        .collect();
    assert_eq!(w.len(), 1, "one line: {w:?}");
    assert!(w[0].message.contains("IPv6 inner networks are unavailable"));
    // The legacy backend is checked with ip6tables-legacy.
    p.iptables.legacy_tables_in_use = vec!["ip_tables_names".into()];
    p.iptables.legacy_works = Some(true);
    assert_eq!(next_iptables_check(&p, &s), Some(IptablesTool::Ip6Legacy));
    // The user's flag or daemon.json decides: nothing is run, nothing added.
    let user = Settings {
        dockerd_args: vec!["--ip6tables=true".into()].into(),
        ..enabled()
    };
    assert_eq!(next_iptables_check(&p, &user), None);
    let plan = make_plan(&p, &user);
    assert_eq!(
        plan.dockerd
            .unwrap()
            .args
            .iter()
            .filter(|a| a.contains("ip6tables"))
            .count(),
        1
    );
    assert!(plan.ip6tables.unwrap().reason.contains("WS_DOCKERD_ARGS"));
    p.daemon_json = crate::probe::daemon_json::parse(
        Path::new("/etc/docker/daemon.json"),
        r#"{"ip6tables": false}"#,
    );
    assert_eq!(next_iptables_check(&p, &s), None);
}

#[test]
fn daemon_json_keys_are_left_out_and_its_socket_is_awaited() {
    let s = enabled();
    let mut p = probe("docker-near-privileged", &s);
    p.net.default_route_mtu = Some(1400);
    with_dockerd(&mut p, "28.5.2+dfsg4");
    p.daemon_json = crate::probe::daemon_json::parse(
        Path::new("/etc/docker/daemon.json"),
        r#"{"mtu": 1380, "hosts": ["unix:///run/dj/docker.sock", "tcp://127.0.0.1:2375"]}"#,
    );
    let plan = make_plan(&p, &s);
    let d = plan.dockerd.as_ref().unwrap();
    assert!(
        !d.args
            .iter()
            .any(|a| a.starts_with("--host") || a.starts_with("--mtu")),
        "{:?}",
        d.args
    );
    // daemon.json's MTU reaches new networks too.
    assert!(d
        .args
        .contains(&"--default-network-opt=bridge=com.docker.network.driver.mtu=1380".to_string()));
    assert_eq!(d.socket, Path::new("/run/dj/docker.sock"));
    assert!(
        plan.warnings.iter().any(|w| w
            .message
            .contains("/run/dj/docker.sock instead of /var/run/docker.sock")),
        "{:?}",
        plan.warnings
    );
    // With our socket among its hosts: no warning.
    p.daemon_json = crate::probe::daemon_json::parse(
        Path::new("/etc/docker/daemon.json"),
        r#"{"hosts": ["unix:///var/run/docker.sock"], "default-network-opts": {"bridge": {"com.docker.network.driver.mtu": "1400"}}}"#,
    );
    let plan = make_plan(&p, &s);
    assert!(
        plan.warnings.iter().all(|w| !w.message.contains("hosts")),
        "{:?}",
        plan.warnings
    );
    assert!(!plan
        .dockerd
        .unwrap()
        .args
        .iter()
        .any(|a| a.starts_with("--default-network-opt")));
    // The user's flag and the file's key together: named, with the fix.
    p.daemon_json = crate::probe::daemon_json::parse(
        Path::new("/etc/docker/daemon.json"),
        r#"{"debug": true}"#,
    );
    let user = Settings {
        dockerd_args: vec!["-D".into()].into(),
        ..enabled()
    };
    let plan = make_plan(&p, &user);
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.message.contains("--debug")
                && w.fix.as_deref().unwrap().contains("drop --debug")),
        "{:?}",
        plan.warnings
    );
    // A malformed file: cause and fix.
    p.daemon_json =
        crate::probe::daemon_json::parse(Path::new("/etc/docker/daemon.json"), "{\"mtu\": 1400,,}");
    let plan = make_plan(&p, &s);
    let w = plan
        .warnings
        .iter()
        .find(|w| w.message.contains("daemon.json"))
        .expect("warning");
    assert!(
        w.message.contains("not valid JSON") && w.message.contains("refuse to start"),
        "{w:?}"
    );
    assert!(w
        .fix
        .as_deref()
        .unwrap()
        .contains("fix or remove /etc/docker/daemon.json"));
}

#[test]
fn every_flag_ws_init_adds_has_its_daemon_json_key() {
    let s = Settings {
        tls: TlsSetting::CertDir("/certs".into()),
        ..enabled()
    };
    // Host cgroupns: --cgroup-parent too.
    let mut p = probe("docker-privileged-v2-hostns", &s);
    p.net.default_route_mtu = Some(1400);
    p.iptables.nft_works = Some(true);
    p.iptables.ip6_nft_works = Some(false);
    with_dockerd(&mut p, "28.5.2");
    let args = args_of(&p, &s);
    assert!(
        args.iter().any(|a| a.starts_with("--cgroup-parent")),
        "{args:?}"
    );
    assert!(args.len() >= 12, "{args:?}");
    for a in &args {
        let name = a.trim_start_matches('-').split('=').next().unwrap();
        assert!(
            dockerd_args::config_key(name).is_some(),
            "--{name} is missing from FLAG_CONFIG_KEYS"
        );
    }
}

#[test]
fn legacy_backend_moves_the_users_iptables_to_legacy_too() {
    let s = Settings {
        iptables_legacy: Some(true),
        ..enabled()
    };
    let mut p = probe("docker-near-privileged", &s);
    p.iptables.alternatives = vec![
        ("iptables".into(), "/usr/sbin/iptables-nft".into()),
        ("ip6tables".into(), "/usr/sbin/ip6tables-legacy".into()),
    ];
    let plan = make_plan(&p, &s);
    assert!(steps(&plan).contains(&&Step::SetIptablesAlternatives {
        set: vec![("iptables".into(), "/usr/sbin/iptables-legacy".into())]
    }));
    // nft: dockerd runs the plain `iptables`, the very one the user runs.
    let plan = make_plan(&p, &enabled());
    assert!(!steps(&plan)
        .iter()
        .any(|s| matches!(s, Step::SetIptablesAlternatives { .. })));
}

#[test]
fn the_plan_names_the_group_member_and_the_failure_policy() {
    let s = enabled();
    let mut p = probe("docker-near-privileged", &s);
    let group = |p: &SystemProbe| {
        make_plan(p, &s)
            .steps
            .into_iter()
            .find(|st| matches!(st.step, Step::EnsureDockerGroup { .. }))
            .unwrap()
    };
    p.workspace_user = Some("workspace".into());
    let g = group(&p);
    assert_eq!(
        g.step,
        Step::EnsureDockerGroup {
            gid: 999,
            member: Some("workspace".into())
        }
    );
    // Required, yet group trouble costs socket access, not the daemon.
    assert!(!g.optional && !g.blocks_dockerd);
    p.workspace_user = Some("root".into());
    assert_eq!(
        group(&p).step,
        Step::EnsureDockerGroup {
            gid: 999,
            member: None
        }
    );
    for st in make_plan(&p, &s).steps {
        if st.optional {
            assert!(!st.blocks_dockerd, "{st:?}");
        } else if !matches!(st.step, Step::EnsureDockerGroup { .. }) {
            assert!(st.blocks_dockerd, "{st:?}");
        }
    }
}
