//! Rootless decisions on fixture probes with a hand-made rootless probe.

use super::*;
use crate::plan::tests::{enabled, probe};
use crate::plan::{decide_mode, make_plan, DockerMode, Step};

fn user() -> RootlessUser {
    RootlessUser {
        name: "workspace".into(),
        uid: 1000,
        gid: 1000,
        home: "/home/workspace".into(),
    }
}

fn full_map() -> Vec<IdRange> {
    vec![IdRange {
        start: 0,
        count: u32::MAX as u64,
    }]
}

fn good() -> RootlessProbe {
    RootlessProbe {
        user: Some(user()),
        user_name: "workspace".into(),
        max_user_namespaces: Some(63000),
        unprivileged_userns_clone: Some(1),
        apparmor_restrict_userns: None,
        subuid: None,
        subgid: Some(vec![]),
        uid_map: full_map(),
        gid_map: full_map(),
        dev_net_tun: false,
        dev_fuse: false,
        programs: super::super::probe::PROGRAMS
            .iter()
            .map(|p| (p.to_string(), Some(PathBuf::from("/usr/bin").join(p))))
            .collect(),
        unprivileged_port_start: Some(1024),
    }
}

fn rootless() -> Settings {
    Settings {
        docker_rootless: true,
        ..enabled()
    }
}

fn with(case: &str, r: RootlessProbe) -> SystemProbe {
    let mut p = probe(case, &rootless());
    p.rootless = Some(r);
    p
}

fn entry(owner: &str, start: u64, count: u64) -> SubIdEntry {
    SubIdEntry {
        owner: owner.into(),
        start,
        count,
    }
}

#[test]
fn ranges_start_at_100000_and_skip_taken_ones() {
    assert_eq!(allocate_range(&[], &full_map(), 1000, 65536), Some(100_000));
    let taken = [entry("a", 100_000, 65536), entry("b", 165_536, 65536)];
    assert_eq!(
        allocate_range(&taken, &full_map(), 1000, 65536),
        Some(231_072)
    );
    // A hole too small for the range is skipped.
    let holey = [entry("a", 100_000, 1000), entry("b", 102_000, 65536)];
    assert_eq!(
        allocate_range(&holey, &full_map(), 1000, 65536),
        Some(167_536)
    );
    // A user whose own uid sits in the way.
    assert_eq!(
        allocate_range(&[], &full_map(), 120_000, 65536),
        Some(120_001)
    );
}

#[test]
fn ranges_stay_inside_our_user_namespace() {
    // sysbox-like: only 65536 ids exist here, no room above 100000.
    let sysbox = [IdRange {
        start: 0,
        count: 65536,
    }];
    assert_eq!(allocate_range(&[], &sysbox, 1000, 65536), None);
    let big = [IdRange {
        start: 0,
        count: 1 << 20,
    }];
    assert_eq!(allocate_range(&[], &big, 1000, 65536), Some(100_000));
    let tight = [IdRange {
        start: 0,
        count: 200_000,
    }];
    assert_eq!(
        allocate_range(&[entry("x", 100_000, 65536)], &tight, 1000, 65536),
        None
    );
}

#[test]
fn an_existing_range_of_the_user_is_kept() {
    let u = user();
    let by_name = [entry("workspace", 300_000, 65536)];
    assert_eq!(
        subids(Some(&by_name), &full_map(), &u, 1000),
        SubIds::Present(65536)
    );
    let by_uid = [entry("1000", 300_000, 4096)];
    assert_eq!(
        subids(Some(&by_uid), &full_map(), &u, 1000),
        SubIds::Present(4096)
    );
    assert_eq!(
        subids(
            Some(&[entry("other", 100_000, 65536)]),
            &full_map(),
            &u,
            1000
        ),
        SubIds::Add("workspace:165536:65536".into())
    );
    assert_eq!(
        subids(None, &full_map(), &u, 1000),
        SubIds::Add("workspace:100000:65536".into())
    );
}

#[test]
fn near_privileged_with_everything_is_rootless_with_its_steps() {
    let p = with("docker-near-privileged", good());
    let plan = make_plan(&p, &rootless());
    assert_eq!(
        plan.mode,
        DockerMode::Rootless {
            user: "workspace".into()
        }
    );
    let actions: Vec<&RootlessStep> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.step {
            Step::Rootless { action } => Some(action),
            _ => None,
        })
        .collect();
    assert_eq!(
        actions[..4],
        [
            &RootlessStep::AddSubIds {
                file: SUBUID_FILE.into(),
                line: "workspace:100000:65536".into()
            },
            &RootlessStep::AddSubIds {
                file: SUBGID_FILE.into(),
                line: "workspace:100000:65536".into()
            },
            &RootlessStep::CreateTun,
            &RootlessStep::RuntimeDir {
                path: "/run/user/1000".into(),
                uid: 1000,
                gid: 1000
            },
        ]
    );
    assert!(actions.contains(&&RootlessStep::DataRoot {
        volume: "/var/lib/docker".into(),
        path: "/var/lib/docker/rootless/workspace".into(),
        uid: 1000,
        gid: 1000
    }));
    // Nothing of the rootful preparation: no docker group, no cgroup or iptables work.
    assert!(!plan.steps.iter().any(|s| matches!(
        s.step,
        Step::EnsureDockerGroup { .. }
            | Step::CgroupV2Evacuate { .. }
            | Step::IptablesLegacyLinks { .. }
            | Step::RemoveStalePidFiles { .. }
    )));
    assert_eq!(plan.iptables, None);
    let d = plan.dockerd.unwrap();
    assert_eq!(d.program, PathBuf::from("/usr/bin/rootlesskit"));
    assert_eq!(d.socket, PathBuf::from("/run/user/1000/docker.sock"));
    let at = d.args.iter().position(|a| a == "dockerd").unwrap();
    assert!(d.args[..at].contains(&"--net=slirp4netns".to_string()));
    assert!(d.args[..at].contains(&"--copy-up=/run".to_string()));
    let dockerd = &d.args[at + 1..];
    assert!(dockerd.contains(&"--host=unix:///run/user/1000/docker.sock".to_string()));
    assert!(dockerd.contains(&"--data-root=/var/lib/docker/rootless/workspace".to_string()));
    assert!(!dockerd
        .iter()
        .any(|a| a.starts_with("--group") || a.starts_with("--cgroup-parent")));
    assert!(d
        .env
        .contains(&("XDG_RUNTIME_DIR".to_string(), "/run/user/1000".to_string())));
}

#[test]
fn the_users_data_root_wins_and_is_not_prepared() {
    let p = with("docker-near-privileged", good());
    let s = Settings {
        dockerd_args: vec!["--data-root=/home/workspace/docker".into()].into(),
        ..rootless()
    };
    let plan = make_plan(&p, &s);
    assert!(!plan.steps.iter().any(|x| matches!(
        x.step,
        Step::Rootless {
            action: RootlessStep::DataRoot { .. }
        }
    )));
    let args = plan.dockerd.unwrap().args;
    assert!(args.contains(&"--data-root=/home/workspace/docker".to_string()));
    assert!(!args.iter().any(|a| a.contains("/var/lib/docker/rootless")));
    assert_eq!(
        data_root(&user()),
        PathBuf::from("/var/lib/docker/rootless/workspace")
    );
}

fn reasons(p: &SystemProbe) -> Vec<String> {
    match decide_mode(p, &rootless()) {
        DockerMode::Impossible { reasons, .. } => reasons,
        m => panic!("not impossible: {m:?}"),
    }
}

#[test]
fn each_missing_prerequisite_names_its_fix() {
    let mut r = good();
    r.max_user_namespaces = Some(0);
    let why = reasons(&with("docker-near-privileged", r)).join("\n");
    assert!(
        why.contains("user.max_user_namespaces = 0")
            && why.contains("sysctl -w user.max_user_namespaces"),
        "{why}"
    );

    let mut r = good();
    r.unprivileged_userns_clone = Some(0);
    let why = reasons(&with("docker-near-privileged", r)).join("\n");
    assert!(why.contains("kernel.unprivileged_userns_clone=1"), "{why}");

    let mut r = good();
    r.apparmor_restrict_userns = Some(1);
    assert!(reasons(&with("docker-near-privileged", r))
        .join("\n")
        .contains("apparmor_restrict_unprivileged_userns=0"));

    let mut r = good();
    r.programs[0].1 = None;
    let why = reasons(&with("docker-near-privileged", r)).join("\n");
    assert!(
        why.contains("missing on PATH: rootlesskit") && why.contains("uidmap"),
        "{why}"
    );

    let mut r = good();
    r.user = Some(RootlessUser { uid: 0, ..user() });
    assert!(reasons(&with("docker-near-privileged", r))
        .join("\n")
        .contains("WS_USER"));

    let mut r = good();
    r.uid_map = vec![IdRange {
        start: 0,
        count: 65536,
    }];
    let why = reasons(&with("docker-near-privileged", r)).join("\n");
    assert!(
        why.contains("/etc/subuid") && !why.contains("/etc/subgid"),
        "{why}"
    );
}

#[test]
fn a_plain_container_is_refused_for_rootless_too() {
    // Rootless still needs what docker's default seccomp/AppArmor profile takes away.
    let why = reasons(&with("docker-plain", good())).join("\n");
    assert!(why.contains("CAP_SYS_ADMIN"), "{why}");
}

#[test]
fn tun_present_and_ranges_present_mean_fewer_steps() {
    let mut r = good();
    r.dev_net_tun = true;
    r.subuid = Some(vec![entry("workspace", 100_000, 65536)]);
    r.subgid = Some(vec![entry("workspace", 100_000, 65536)]);
    let p = with("docker-near-privileged", r.clone());
    let st = steps(&p, &r, &rootless());
    assert!(matches!(st[0], RootlessStep::RuntimeDir { .. }), "{st:?}");
    assert!(!st.contains(&RootlessStep::CreateTun));
}

#[test]
fn limitations_are_said_not_hidden() {
    let p = with("host-hybrid-v1", good());
    let l = limitations(&p, p.rootless.as_ref().unwrap()).join("\n");
    assert!(
        l.contains("resource limits") && l.contains("cgroup v1"),
        "{l}"
    );
    assert!(l.contains("below 1024"), "{l}");
    let mut r = good();
    r.unprivileged_port_start = Some(0);
    let p = with("docker-near-privileged", r);
    let l = limitations(&p, p.rootless.as_ref().unwrap()).join("\n");
    assert!(!l.contains("below"), "{l}");
}

#[test]
fn steps_serialize_flat_for_doctor() {
    let p = with("docker-near-privileged", good());
    let plan = make_plan(&p, &rootless());
    let v = serde_json::to_value(&plan.steps[0]).unwrap();
    assert_eq!(v["step"], "rootless");
    assert_eq!(v["action"], "add_sub_ids");
    assert_eq!(v["file"], "/etc/subuid");
    assert_eq!(v["optional"], false);
}

#[test]
fn rootless_off_changes_nothing() {
    let p = probe("docker-near-privileged", &enabled());
    assert_eq!(p.rootless, None);
    assert!(matches!(
        decide_mode(&p, &enabled()),
        DockerMode::InnerDaemon { .. }
    ));
}
