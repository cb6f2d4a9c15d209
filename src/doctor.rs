//! `ws-init doctor`: what was detected, what ws-init would do, each problem with its fix.

use serde::Serialize;

use crate::config::Settings;
use crate::plan::dns::DnsDecision;
use crate::plan::{DockerMode, Plan, Privilege, RemoteKind, Step, Warning};
use crate::probe::{CapLevel, CgroupLayout, SystemProbe};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct CgroupSummary {
    pub layout: crate::probe::CgroupLayout,
    pub read_only_v1: Vec<String>,
    pub cgroup2_mounts: Vec<String>,
    pub root_procs: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CapsSummary {
    pub level: CapLevel,
    pub missing: Vec<String>,
    pub user_namespace: bool,
    pub seccomp_filter: bool,
    pub apparmor_profile: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub message: String,
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub schema_version: u32,
    /// Docker would work (the mode is not Impossible).
    pub ok: bool,
    pub enabled: bool,
    pub mode: DockerMode,
    pub running_as_root: bool,
    pub cgroups: CgroupSummary,
    pub iptables: Option<crate::plan::IptablesDecision>,
    pub capabilities: CapsSummary,
    pub storage_path: String,
    pub storage_fs: Option<String>,
    pub storage_is_volume: bool,
    pub mtu_interface: Option<String>,
    pub mtu: Option<u32>,
    pub containerd_storage_path: String,
    pub containerd_storage_fs: Option<String>,
    pub versions: crate::probe::VersionsProbe,
    pub ip6tables: Option<crate::plan::Ip6tablesDecision>,
    pub daemon_json: DaemonJsonSummary,
    pub steps: Vec<crate::plan::PlannedStep>,
    pub inner_dns: Option<crate::plan::dns::DnsPlan>,
    pub dockerd_command: Option<Vec<String>>,
    /// WS_DOCKER_ROOTLESS on: each prerequisite and what rootless cannot do here.
    pub rootless: Option<crate::rootless::plan::RootlessReport>,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DaemonJsonSummary {
    pub path: String,
    pub present: bool,
    pub keys: Vec<String>,
    pub error: Option<String>,
}

/// Doctor run by someone else than PID 1 (`docker exec -u workspace`, or a
/// shell): say whose view this is and how to get PID 1's.
fn viewpoint_note(probe: &SystemProbe) -> Option<String> {
    if probe.euid == probe.pid1_euid || probe.pid1_comm.as_deref() != Some("ws-init") {
        return None;
    }
    Some(format!(
        "doctor runs as uid {}, while ws-init (PID 1) runs as uid {}: this report is what uid {} sees, not what ws-init sees. For ws-init's view run `docker exec CONTAINER ws-init doctor` (docker exec runs as root), or `docker run --rm IMAGE ws-init doctor` with the container's options",
        probe.euid.map_or("?".into(), |u| u.to_string()),
        probe.pid1_euid.map_or("?".into(), |u| u.to_string()),
        probe.euid.map_or("?".into(), |u| u.to_string()),
    ))
}

pub fn report(probe: &SystemProbe, plan: &Plan, settings: &Settings) -> DoctorReport {
    let mut problems: Vec<Problem> = Vec::new();
    if let DockerMode::Impossible {
        reasons,
        suggestions,
    } = &plan.mode
    {
        let fix = format!("any of: {}", suggestions.join("; "));
        problems.extend(reasons.iter().map(|r| Problem {
            message: r.clone(),
            fix: Some(fix.clone()),
        }));
    }
    problems.extend(
        plan.warnings
            .iter()
            .map(|Warning { message, fix }| Problem {
                message: message.clone(),
                fix: fix.clone(),
            }),
    );
    problems.extend(probe.errors.iter().map(|e| Problem {
        message: e.clone(),
        fix: None,
    }));
    let notes: Vec<String> = viewpoint_note(probe)
        .into_iter()
        .chain(plan.notes.iter().cloned())
        .collect();
    let paths = |v: &[std::path::PathBuf]| v.iter().map(|p| p.display().to_string()).collect();
    DoctorReport {
        schema_version: SCHEMA_VERSION,
        ok: plan.mode.works(),
        enabled: settings.docker_enable_client,
        mode: plan.mode.clone(),
        running_as_root: probe.is_root(),
        cgroups: CgroupSummary {
            layout: probe.cgroups.layout,
            read_only_v1: paths(&probe.cgroups.v1_read_only),
            cgroup2_mounts: paths(&probe.cgroups.cgroup2_mounts),
            root_procs: probe.cgroups.v2_root.as_ref().map(|r| r.root_procs),
        },
        iptables: plan.iptables.clone(),
        capabilities: CapsSummary {
            level: probe.caps.level,
            missing: probe.caps.missing.clone(),
            user_namespace: probe.userns.in_user_namespace,
            seccomp_filter: probe.seccomp == Some(2),
            apparmor_profile: probe.apparmor_profile.clone(),
        },
        storage_path: probe.docker_storage.path.display().to_string(),
        storage_fs: probe.docker_storage.fs_type.clone(),
        storage_is_volume: probe.docker_storage.is_mount_point,
        mtu_interface: probe.net.default_route_interface.clone(),
        mtu: probe.net.default_route_mtu,
        containerd_storage_path: probe.containerd_storage.path.display().to_string(),
        containerd_storage_fs: probe.containerd_storage.fs_type.clone(),
        versions: probe.versions.clone(),
        ip6tables: plan.ip6tables.clone(),
        daemon_json: DaemonJsonSummary {
            path: probe.daemon_json.path.display().to_string(),
            present: probe.daemon_json.present,
            keys: probe.daemon_json.keys.clone(),
            error: probe.daemon_json.error.clone(),
        },
        steps: plan.steps.clone(),
        inner_dns: plan.dns.clone(),
        dockerd_command: plan.dockerd.as_ref().map(|d| {
            std::iter::once(d.program.display().to_string())
                .chain(d.args.iter().cloned())
                .collect()
        }),
        rootless: probe
            .rootless
            .as_ref()
            .map(|r| crate::rootless::plan::report(probe, r)),
        problems,
        notes,
    }
}

fn version_text(v: &crate::probe::ComponentVersion) -> String {
    match (&v.version, &v.binary) {
        (Some(ver), Some(b)) => format!(
            "{ver} ({}, package {})",
            b.display(),
            v.package.as_deref().unwrap_or("?")
        ),
        (None, Some(b)) => format!("unknown ({} is not from a package)", b.display()),
        _ => "not found".into(),
    }
}

fn remote_kind_text(kind: RemoteKind) -> &'static str {
    match kind {
        RemoteKind::Tcp => "tcp",
        RemoteKind::TcpTls => "tcp with TLS",
        RemoteKind::Ssh => "ssh",
        RemoteKind::Unix => "unix socket",
        RemoteKind::Other => "other scheme",
    }
}

fn mode_text(m: &DockerMode) -> String {
    match m {
        DockerMode::Disabled => "disabled (WS_DOCKER_ENABLE_CLIENT is off)".into(),
        DockerMode::Remote { host, kind } => {
            format!("remote engine {host} ({})", remote_kind_text(*kind))
        }
        DockerMode::HostSocket {
            path,
            gid,
            read_only,
            answers,
        } => format!(
            "host socket {} (group {gid}{}{})",
            path.display(),
            if *read_only { ", read-only mount" } else { "" },
            if *answers {
                ", answering"
            } else {
                ", not answering"
            }
        ),
        DockerMode::Sysbox => "inner dockerd under sysbox".into(),
        DockerMode::InnerDaemon { privilege } => format!(
            "inner dockerd ({})",
            match privilege {
                Privilege::Full => "privileged",
                Privilege::NearPrivileged => "near-privileged",
            }
        ),
        DockerMode::Rootless { user } => format!("rootless inner dockerd (as {user})"),
        DockerMode::Impossible { .. } => "impossible in this container".into(),
    }
}

fn step_text(s: &Step) -> String {
    match s {
        Step::RemoveStalePidFiles { files } => format!(
            "remove stale pid files {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Step::MountSecurityfs => "mount securityfs on /sys/kernel/security".into(),
        Step::RemountCgroup2Rw { mount_point } => {
            format!("remount {} read-write", mount_point.display())
        }
        Step::CgroupV2Evacuate {
            root,
            init,
            controllers,
        } => format!(
            "move processes of {} into {} and enable {}",
            root.display(),
            init.display(),
            controllers.join(" ")
        ),
        Step::RemountCgroupV1Rw { mount_points } => {
            format!(
                "remount {} cgroup v1 hierarchies read-write",
                mount_points.len()
            )
        }
        Step::MakeRootRshared => "mount --make-rshared /".into(),
        Step::IptablesLegacyLinks { dir, .. } => format!(
            "put iptables-legacy links in {} first on PATH",
            dir.display()
        ),
        Step::SetIptablesAlternatives { set } => format!(
            "update-alternatives --set {}",
            set.iter()
                .map(|(n, p)| format!("{n} {}", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Step::GenerateTls { dir, .. } => format!("generate TLS certificates in {}", dir.display()),
        Step::EnsureDockerGroup { gid, .. } => {
            format!("ensure group docker (gid {gid}) with the workspace user")
        }
        Step::AddUserToSocketGroup { gid, .. } => {
            format!("add the workspace user to the socket's group {gid}")
        }
        Step::Rootless { action } => action.text(),
    }
}

pub fn render_text(r: &DoctorReport) -> String {
    let mut out = String::new();
    let mut row = |k: &str, v: String| out.push_str(&format!("{k:<14} {v}\n"));
    row(
        "docker",
        format!(
            "{} — {}",
            if r.ok { "OK" } else { "NOT AVAILABLE" },
            mode_text(&r.mode)
        ),
    );
    row(
        "root",
        if r.running_as_root {
            "yes".into()
        } else {
            "no".into()
        },
    );
    let mut cg = match r.cgroups.layout {
        CgroupLayout::Unified => "v2 (unified)",
        CgroupLayout::Hybrid => "v1 with a v2 tree (hybrid)",
        CgroupLayout::Legacy => "v1 (legacy)",
        CgroupLayout::None => "none mounted",
    }
    .to_string();
    if !r.cgroups.read_only_v1.is_empty() {
        cg.push_str(&format!(
            ", {} v1 hierarchies read-only",
            r.cgroups.read_only_v1.len()
        ));
    }
    if let Some(n) = r.cgroups.root_procs {
        cg.push_str(&format!(", {n} processes in the root cgroup"));
    }
    row("cgroups", cg);
    let c = &r.capabilities;
    let mut caps = match c.level {
        CapLevel::Full => "full (privileged)",
        CapLevel::NearPrivileged => "near-privileged",
        CapLevel::Restricted => "restricted",
    }
    .to_string();
    if !c.missing.is_empty() && c.missing.len() <= 6 {
        caps.push_str(&format!(" (missing {})", c.missing.join(", ")));
    } else if !c.missing.is_empty() {
        caps.push_str(&format!(" ({} missing)", c.missing.len()));
    }
    if c.user_namespace {
        caps.push_str(", user namespace");
    }
    if c.seccomp_filter {
        caps.push_str(", seccomp filter");
    }
    if let Some(a) = &c.apparmor_profile {
        caps.push_str(&format!(", AppArmor {a}"));
    }
    row("capabilities", caps);
    row(
        "iptables",
        match &r.iptables {
            Some(d) => format!(
                "{} — {}",
                format!("{:?}", d.backend).to_lowercase(),
                d.reason
            ),
            None => "not used".into(),
        },
    );
    row(
        "storage",
        format!(
            "{} on {}{}",
            r.storage_path,
            r.storage_fs.as_deref().unwrap_or("unknown"),
            if r.storage_is_volume {
                " (own mount)"
            } else {
                ""
            }
        ),
    );
    row(
        "mtu",
        match (&r.mtu_interface, r.mtu) {
            (Some(i), Some(m)) => format!("{m} ({i}, default route)"),
            (Some(i), None) => format!("unknown ({i})"),
            _ => "no default route".into(),
        },
    );
    row(
        "ip6tables",
        match &r.ip6tables {
            Some(d) if d.disable => format!(
                "off (--ip6tables=false) — {}; IPv6 inner networks are unavailable",
                d.reason
            ),
            Some(d) => format!("dockerd's choice — {}", d.reason),
            None => "not used".into(),
        },
    );
    row(
        "daemon.json",
        match (&r.daemon_json.error, r.daemon_json.present) {
            (Some(e), _) => format!("{} UNUSABLE: {e}", r.daemon_json.path),
            (None, true) if r.daemon_json.keys.is_empty() => {
                format!("{} (no settings)", r.daemon_json.path)
            }
            (None, true) => format!(
                "{} sets {} (ws-init leaves those flags out)",
                r.daemon_json.path,
                r.daemon_json.keys.join(", ")
            ),
            (None, false) => format!("{} (none)", r.daemon_json.path),
        },
    );
    row("dockerd ver", version_text(&r.versions.dockerd));
    row("containerd", version_text(&r.versions.containerd));
    row("runc", version_text(&r.versions.runc));
    if let Some(d) = &r.inner_dns {
        let decision = match d.decision {
            DnsDecision::Unchanged => "unchanged",
            DnsDecision::Forwarder => "forwarder",
            DnsDecision::UserSetting => "your setting",
            DnsDecision::Unavailable => "UNAVAILABLE",
        };
        row("inner dns", format!("{decision} — {}", d.why));
    }
    if let Some(cmd) = &r.dockerd_command {
        row("dockerd", cmd.join(" "));
    }
    if let Some(rl) = &r.rootless {
        out.push_str("\nrootless:\n");
        for c in &rl.prerequisites {
            out.push_str(&format!(
                "  {} {:<16} {}\n",
                if c.ok { "ok" } else { "!!" },
                c.name,
                c.detail
            ));
            if let Some(f) = &c.fix {
                out.push_str(&format!("     fix: {f}\n"));
            }
        }
        out.push_str("  cannot do here:\n");
        for l in &rl.limitations {
            out.push_str(&format!("   - {l}\n"));
        }
    }
    if !r.steps.is_empty() {
        out.push_str("\nsteps:\n");
        for s in &r.steps {
            out.push_str(&format!(
                "  - {}{}\n",
                step_text(&s.step),
                if s.optional { " (optional)" } else { "" }
            ));
        }
    }
    if !r.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in &r.notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    if !r.problems.is_empty() {
        out.push_str("\nproblems:\n");
        for (i, p) in r.problems.iter().enumerate() {
            out.push_str(&format!("  ! {}\n", p.message));
            // Problems that share one fix (the reasons of `impossible`) get it once, after the last.
            let next_same = r.problems.get(i + 1).is_some_and(|n| n.fix == p.fix);
            if let Some(f) = p.fix.as_ref().filter(|_| !next_same) {
                out.push_str(&format!("    fix: {f}\n"));
            }
        }
    }
    out
}

pub fn render_json(r: &DoctorReport) -> String {
    // Every field is plain data (paths were made strings): this cannot fail.
    serde_json::to_string_pretty(r)
        .unwrap_or_else(|e| format!("{{\"schema_version\":1,\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::make_plan;
    use crate::plan::tests::{enabled, probe};

    #[test]
    fn plain_run_report_is_not_ok_and_lists_the_ways_out() {
        let s = enabled();
        let p = probe("docker-plain", &s);
        let r = report(&p, &make_plan(&p, &s), &s);
        assert!(!r.ok);
        let text = render_text(&r);
        assert!(text.contains("NOT AVAILABLE"), "{text}");
        assert!(
            text.contains("--privileged") && text.contains("sysbox-runc"),
            "{text}"
        );
        assert!(text.contains("9 v1 hierarchies read-only"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["ok"], false);
        assert_eq!(v["mode"]["mode"], "impossible");
    }

    #[test]
    fn near_privileged_report_shows_steps_and_storage_fix() {
        let s = enabled();
        let mut p = probe("docker-near-privileged", &s);
        p.iptables.nft_works = Some(true);
        let r = report(&p, &make_plan(&p, &s), &s);
        assert!(r.ok);
        let text = render_text(&r);
        for needle in [
            "inner dockerd (near-privileged)",
            "remount 9 cgroup v1 hierarchies read-write",
            "mount --make-rshared /",
            "/var/lib/docker on overlay",
            "fix: mount a volume there: -v ws-docker:/var/lib/docker",
            "nft — `iptables -nL` works",
            "dockerd --host=unix:///var/run/docker.sock",
            "mtu            1500 (eth0, default route)",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
        let v: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
        assert_eq!(v["mode"]["privilege"], "near_privileged");
        assert_eq!(v["steps"][0]["step"], "mount_securityfs");
        assert_eq!(v["storage_fs"], "overlay");
    }

    #[test]
    fn shared_fix_is_printed_once_and_another_users_view_says_so() {
        let s = enabled();
        let mut p = probe("docker-plain", &s);
        p.euid = Some(1000);
        p.pid1_comm = Some("ws-init".into());
        p.pid1_euid = Some(0);
        let r = report(&p, &make_plan(&p, &s), &s);
        let text = render_text(&r);
        assert!(r.problems.len() >= 2, "{text}");
        assert_eq!(text.matches("fix: any of:").count(), 1, "{text}");
        assert!(
            text.contains("doctor runs as uid 1000, while ws-init (PID 1) runs as uid 0")
                && text.contains("docker exec CONTAINER ws-init doctor"),
            "{text}"
        );
        // Run by PID 1's own user: no such note.
        p.euid = Some(0);
        let r = report(&p, &make_plan(&p, &s), &s);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn versions_ip6tables_and_daemon_json_are_shown() {
        let s = enabled();
        let mut p = probe("docker-near-privileged", &s);
        p.iptables.nft_works = Some(true);
        p.iptables.ip6_nft_works = Some(false);
        p.versions.dockerd = crate::probe::ComponentVersion {
            binary: Some("/usr/sbin/dockerd".into()),
            package: Some("docker.io".into()),
            version: Some("28.5.2+dfsg4".into()),
        };
        p.versions.runc.binary = Some("/usr/local/bin/runc".into());
        p.daemon_json = crate::probe::daemon_json::parse(
            std::path::Path::new("/etc/docker/daemon.json"),
            r#"{"mtu": 1400}"#,
        );
        let r = report(&p, &make_plan(&p, &s), &s);
        let text = render_text(&r);
        for needle in [
            "dockerd ver    28.5.2+dfsg4 (/usr/sbin/dockerd, package docker.io)",
            "containerd     not found",
            "runc           unknown (/usr/local/bin/runc is not from a package)",
            "ip6tables      off (--ip6tables=false) — `ip6tables -t nat -nL` fails here",
            "IPv6 inner networks are unavailable",
            "daemon.json    /etc/docker/daemon.json sets mtu (ws-init leaves those flags out)",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
        let v: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
        assert_eq!(v["versions"]["dockerd"]["version"], "28.5.2+dfsg4");
        assert_eq!(v["ip6tables"]["disable"], true);
        assert_eq!(v["daemon_json"]["keys"][0], "mtu");
        assert_eq!(
            v["containerd_storage_path"],
            "/var/lib/docker/containerd/daemon"
        );
    }

    #[test]
    fn inner_dns_decision_and_flags_are_shown() {
        let s = enabled();
        let mut p = probe("docker-near-privileged", &s);
        p.iptables.nft_works = Some(true);
        p.resolv_conf = Some(crate::probe::resolv::ResolvConf::parse(
            "nameserver 127.0.0.11\noptions ndots:0\n",
        ));
        p.net.ipv4_addrs = vec![("eth0".into(), std::net::Ipv4Addr::new(172, 18, 0, 3))];
        let r = report(&p, &make_plan(&p, &s), &s);
        let text = render_text(&r);
        for needle in [
            "inner dns      forwarder — the workspace resolves through loopback 127.0.0.11",
            "--dns=172.18.0.3 --dns-opt=attempts:2 --shutdown-timeout",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
        let v: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
        assert_eq!(v["inner_dns"]["decision"], "forwarder");
        assert_eq!(v["inner_dns"]["forwarder"]["listen"], "172.18.0.3:53");
        // The user's --dns wins, and doctor says so.
        let s = Settings {
            dockerd_args: vec!["--dns=192.0.2.53".into()].into(),
            ..enabled()
        };
        let text = render_text(&report(&p, &make_plan(&p, &s), &s));
        assert!(
            text.contains("inner dns      your setting — WS_DOCKERD_ARGS sets --dns"),
            "{text}"
        );
        assert_eq!(text.matches("--dns").count(), 2, "{text}");
    }

    #[test]
    fn disabled_is_ok_with_nothing_to_do() {
        let s = Settings::default();
        let p = probe("docker-plain", &s);
        let r = report(&p, &make_plan(&p, &s), &s);
        assert!(r.ok && r.steps.is_empty() && r.problems.is_empty() && !r.enabled);
        assert!(render_text(&r).contains("disabled"));
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;
    use crate::plan::make_plan;
    use crate::plan::tests::{enabled, probe};

    const SCHEMA_DOC: &str = include_str!("../docs/doctor-json.md");

    /// The backticked first cells of the table under `heading` in the doc.
    fn documented(heading: &str) -> Vec<String> {
        let section = SCHEMA_DOC
            .split(heading)
            .nth(1)
            .expect("section in docs/doctor-json.md");
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split('`').nth(1).map(str::to_string))
            .collect()
    }

    #[test]
    fn json_fields_are_exactly_the_documented_ones() {
        let fields = documented("## Top-level fields");
        assert!(fields.len() > 10, "{fields:?}");
        for (case, settings) in [
            ("docker-plain", enabled()),
            ("docker-near-privileged", enabled()),
            ("host-hybrid-v1", Settings::default()),
        ] {
            let p = probe(case, &settings);
            let r = report(&p, &make_plan(&p, &settings), &settings);
            let v: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            let mut want = fields.clone();
            keys.sort();
            want.sort();
            assert_eq!(
                keys, want,
                "{case}: top-level keys differ from docs/doctor-json.md"
            );
            let mode = v["mode"]["mode"].as_str().unwrap().to_string();
            assert!(
                documented("## `mode.mode` values").contains(&mode),
                "{case}: mode {mode} undocumented"
            );
        }
    }
}
