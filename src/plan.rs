//! Decide (pure, no I/O): which Docker mode this container can offer, and the
//! steps `prepare` and `dockerd` take to get there. Input is a `SystemProbe`
//! and the `Settings`; every decision is unit-tested on captured fixtures.

pub mod dns;
pub mod dockerd_args;
pub mod ip6tables;
pub mod iptables;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::docker_host::Endpoint;
use crate::config::{DockerHost, Settings, TlsSetting};
use crate::probe::caps::{CAP_NET_ADMIN, CAP_SYS_ADMIN};
use crate::probe::{CapLevel, CgroupLayout, IptablesTool, SystemProbe, DOCKER_SOCKET};

pub use ip6tables::{choose_ip6tables, Ip6Choice, Ip6tablesDecision};
pub use iptables::{
    choose_iptables, IptablesBackend, IptablesChoice, IptablesDecision, LEGACY_LINK_DIR,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteKind {
    Tcp,
    TcpTls,
    Ssh,
    Unix,
    /// `fd://`, `npipe://`: passed to the CLI as is.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    Full,
    NearPrivileged,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum DockerMode {
    /// WS_DOCKER_ENABLE_CLIENT is off.
    Disabled,
    /// DOCKER_HOST names an engine elsewhere; start nothing.
    Remote { host: String, kind: RemoteKind },
    /// A socket bind-mounted from the host (or named by a unix:// DOCKER_HOST).
    HostSocket {
        path: PathBuf,
        gid: u32,
        read_only: bool,
        answers: bool,
    },
    /// sysbox-runc: inner dockerd without cgroup evacuation, mount failures not fatal.
    Sysbox,
    /// --privileged or the near-privileged flag set: full DinD preparation.
    InnerDaemon { privilege: Privilege },
    /// WS_DOCKER_ROOTLESS: dockerd runs as `user` through rootlesskit.
    Rootless { user: String },
    /// Plain `docker run` (or not root): the workspace starts, Docker does not.
    Impossible {
        reasons: Vec<String>,
        suggestions: Vec<String>,
    },
}

impl DockerMode {
    /// Docker would work in this mode (doctor's `ok`; Disabled counts as fine).
    pub fn works(&self) -> bool {
        !matches!(self, DockerMode::Impossible { .. })
    }
    pub fn starts_dockerd(&self) -> bool {
        matches!(
            self,
            DockerMode::Sysbox | DockerMode::InnerDaemon { .. } | DockerMode::Rootless { .. }
        )
    }
    pub fn name(&self) -> &'static str {
        match self {
            DockerMode::Disabled => "disabled",
            DockerMode::Remote { .. } => "remote",
            DockerMode::HostSocket { .. } => "host-socket",
            DockerMode::Sysbox => "sysbox",
            DockerMode::InnerDaemon { .. } => "inner-daemon",
            DockerMode::Rootless { .. } => "rootless",
            DockerMode::Impossible { .. } => "impossible",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Delete `docker*.pid` left by an unclean stop (dockerd refuses to start otherwise).
    RemoveStalePidFiles { files: Vec<PathBuf> },
    /// `mount -t securityfs securityfs /sys/kernel/security` (AppArmor inside needs it).
    MountSecurityfs,
    /// cgroup2 root mounted read-only: `mount -o remount,rw` it.
    RemountCgroup2Rw { mount_point: PathBuf },
    /// Move every process of the root cgroup into `init`, then enable `controllers` for children.
    CgroupV2Evacuate {
        root: PathBuf,
        init: PathBuf,
        controllers: Vec<String>,
    },
    /// `mount -o remount,bind,rw` each read-only cgroup v1 hierarchy.
    RemountCgroupV1Rw { mount_points: Vec<PathBuf> },
    /// `mount --make-rshared /`.
    MakeRootRshared,
    /// Create `dir` with `iptables*` → `*-legacy` links; dockerd gets it first on PATH.
    IptablesLegacyLinks {
        dir: PathBuf,
        /// `iptables-legacy --version` as probed, for the log (`None`: not probed).
        version: Option<Result<String, String>>,
        /// (link name, legacy binary) as probed, or why the binary is not
        /// usable; apply looks nothing up.
        links: Vec<crate::probe::iptables::LegacyLink>,
    },
    /// `update-alternatives --set NAME PATH` for each pair, so the workspace's
    /// own `iptables` shows the rules dockerd makes.
    SetIptablesAlternatives { set: Vec<(String, PathBuf)> },
    /// Generate or refresh certificates under `dir` (upstream layout ca/, server/, client/).
    GenerateTls {
        dir: PathBuf,
        extra_sans: Vec<String>,
        /// The server certificate's names: the host name and every interface address.
        hostname: String,
        ips: Vec<std::net::IpAddr>,
    },
    /// A `docker` group with this gid exists and has `member` (the workspace
    /// user; `None` for root, who needs no group).
    EnsureDockerGroup { gid: u32, member: Option<String> },
    /// The host socket's group (by gid) exists and has `member`.
    AddUserToSocketGroup { gid: u32, member: Option<String> },
    /// Rootless mode's preparation (`rootless::plan`).
    Rootless {
        #[serde(flatten)]
        action: crate::rootless::plan::RootlessStep,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedStep {
    #[serde(flatten)]
    pub step: Step,
    /// A failure is logged as a warning and startup continues.
    pub optional: bool,
    /// A failure keeps dockerd from starting (never for an optional step;
    /// group trouble costs the user access to the socket, not the daemon).
    pub blocks_dockerd: bool,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub message: String,
    pub fix: Option<String>,
}

fn warn(message: impl Into<String>, fix: impl Into<Option<String>>) -> Warning {
    Warning {
        message: message.into(),
        fix: fix.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DockerdPlan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub socket: PathBuf,
    pub iptables_legacy: bool,
    pub tls_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    pub mode: DockerMode,
    pub steps: Vec<PlannedStep>,
    pub dockerd: Option<DockerdPlan>,
    /// `None` when no dockerd is started or the user passed `--iptables=false`.
    pub iptables: Option<IptablesDecision>,
    /// `None` when no dockerd is started.
    pub ip6tables: Option<Ip6tablesDecision>,
    /// Inner containers' DNS; `None` when no dockerd is started.
    pub dns: Option<dns::DnsPlan>,
    pub warnings: Vec<Warning>,
    /// Facts for doctor that are not worth a warning at every start.
    pub notes: Vec<String>,
}

pub const SUGGEST_PRIVILEGED: &str =
    "run with --privileged (Kubernetes: securityContext.privileged: true and an emptyDir on /var/lib/docker)";
pub const SUGGEST_SYSBOX: &str = "run with --runtime=sysbox-runc (no --privileged needed)";
pub const SUGGEST_SOCKET: &str =
    "use the host's engine: -v /var/run/docker.sock:/var/run/docker.sock";
pub const SUGGEST_REMOTE: &str =
    "use a remote engine: -e DOCKER_HOST=tcp://HOST:2376 with TLS client certificates, or -e DOCKER_HOST=ssh://USER@HOST";

fn remote_kind(host: &DockerHost) -> RemoteKind {
    match &host.endpoint {
        // TLS as the readiness client sees it (DOCKER_TLS_VERIFY or port 2376).
        Some(Endpoint::Tcp { tls: true, .. }) => RemoteKind::TcpTls,
        Some(Endpoint::Tcp { tls: false, .. }) => RemoteKind::Tcp,
        Some(Endpoint::Ssh(_)) => RemoteKind::Ssh,
        Some(Endpoint::Unix(_)) => RemoteKind::Unix,
        None => RemoteKind::Other,
    }
}

/// What stops an inner dockerd here (empty = nothing).
pub fn inner_daemon_blockers(p: &SystemProbe) -> Vec<String> {
    let mut r = Vec::new();
    if !p.is_root() {
        r.push(match p.euid {
            Some(uid) => format!("ws-init runs as uid {uid}, not root, so it cannot start dockerd"),
            None => "ws-init cannot tell its own uid (/proc/self/status unreadable)".to_string(),
        });
    }
    let missing: Vec<String> = [CAP_SYS_ADMIN, CAP_NET_ADMIN]
        .into_iter()
        .filter(|b| !p.caps.has(*b))
        .map(crate::probe::caps::cap_name)
        .collect();
    if !missing.is_empty() {
        r.push(format!(
            "the container lacks {} (a plain `docker run` gives too few capabilities for an inner dockerd)",
            missing.join(" and ")
        ));
    }
    if let Some(profile) = &p.apparmor_profile {
        if profile != "unconfined" && profile.contains("(enforce)") {
            r.push(format!(
                "AppArmor profile {profile:?} forbids the mounts dockerd needs (--security-opt apparmor=unconfined lifts it)"
            ));
        }
    }
    if p.cgroups.layout == CgroupLayout::None {
        r.push("no cgroup filesystem is mounted under /sys/fs/cgroup".to_string());
    }
    r
}

fn impossible(p: &SystemProbe, reasons: Vec<String>) -> DockerMode {
    let mut suggestions = Vec::new();
    if !p.is_root() {
        suggestions.push(
            "run ws-init as root (drop `-u`/`USER` for the entrypoint; the main command still runs as WS_USER)"
                .to_string(),
        );
    }
    suggestions.extend(
        [
            SUGGEST_PRIVILEGED,
            SUGGEST_SYSBOX,
            SUGGEST_SOCKET,
            SUGGEST_REMOTE,
        ]
        .map(str::to_string),
    );
    DockerMode::Impossible {
        reasons,
        suggestions,
    }
}

/// The Docker mode, checked in this order: disabled, DOCKER_HOST, host socket,
/// sysbox (before the capability test, which also passes there), inner daemon.
pub fn decide_mode(p: &SystemProbe, s: &Settings) -> DockerMode {
    if !s.docker_enable_client {
        return DockerMode::Disabled;
    }
    if let Some(host) = &s.docker_host {
        match &host.endpoint {
            // Our own socket path: the same as no DOCKER_HOST.
            Some(Endpoint::Unix(path)) if path == Path::new(DOCKER_SOCKET) => {}
            Some(Endpoint::Unix(_)) => {
                if let Some(sock) = p.docker_host_socket.as_ref().filter(|s| s.is_socket) {
                    return DockerMode::HostSocket {
                        path: sock.path.clone(),
                        gid: sock.gid.unwrap_or(0),
                        read_only: sock.mount_read_only.unwrap_or(false),
                        answers: sock.answers(),
                    };
                }
                return DockerMode::Remote {
                    host: host.value.clone(),
                    kind: RemoteKind::Unix,
                };
            }
            _ => {
                return DockerMode::Remote {
                    host: host.value.clone(),
                    kind: remote_kind(host),
                }
            }
        }
    }
    // Host socket: bind-mounted in (the socket path is itself a mount point), or
    // answering while no dockerd of ours runs (a shared /var/run volume with a
    // sidecar). A socket file that is neither is the leftover of our own inner
    // dockerd after `docker restart`: dockerd replaces it.
    let sock = &p.docker_socket;
    if sock.is_socket && (sock.is_mount_point || (sock.answers() && p.dockerd_pids.is_empty())) {
        return DockerMode::HostSocket {
            path: sock.path.clone(),
            gid: sock.gid.unwrap_or(0),
            read_only: sock.mount_read_only.unwrap_or(false),
            answers: sock.answers(),
        };
    }
    if let Some(r) = p.rootless.as_ref().filter(|_| s.docker_rootless) {
        let mut blockers = inner_daemon_blockers(p);
        blockers.extend(crate::rootless::plan::blockers(p, r));
        return match (&r.user, blockers.is_empty()) {
            (Some(u), true) => DockerMode::Rootless {
                user: u.name.clone(),
            },
            _ => impossible(p, blockers),
        };
    }
    if !p.sysboxfs_mounts.is_empty() {
        return if p.is_root() {
            DockerMode::Sysbox
        } else {
            impossible(p, inner_daemon_blockers(p))
        };
    }
    let blockers = inner_daemon_blockers(p);
    if !blockers.is_empty() {
        return impossible(p, blockers);
    }
    DockerMode::InnerDaemon {
        privilege: if p.caps.level == CapLevel::Full {
            Privilege::Full
        } else {
            Privilege::NearPrivileged
        },
    }
}

/// The next iptables command check the plan needs, if any (`bringup::probe_system` runs it and feeds the result back).
pub fn next_iptables_check(p: &SystemProbe, s: &Settings) -> Option<IptablesTool> {
    // Rootless dockerd runs iptables in its own fresh network namespace.
    if !matches!(
        decide_mode(p, s),
        DockerMode::Sysbox | DockerMode::InnerDaemon { .. }
    ) || s.dockerd_args.disabled_iptables()
    {
        return None;
    }
    match choose_iptables(s.iptables_legacy, &p.iptables) {
        IptablesChoice::NeedCheck(t) => Some(t),
        IptablesChoice::Decided(d) => match choose_ip6tables(p, s.dockerd_args.words(), Some(&d)) {
            Ip6Choice::NeedCheck(t) => Some(t),
            Ip6Choice::Decided(_) => None,
        },
    }
}

/// dockerd gets the legacy iptables backend and its version is not probed
/// yet: `bringup::probe_system` then probes it, for the log.
pub fn wants_iptables_legacy_version(p: &SystemProbe, s: &Settings) -> bool {
    p.iptables.legacy_version.is_none()
        && matches!(
            decide_mode(p, s),
            DockerMode::Sysbox | DockerMode::InnerDaemon { .. }
        )
        && iptables_decision(p, s).is_some_and(|d| d.backend == IptablesBackend::Legacy)
}

fn ip6tables_decision(
    p: &SystemProbe,
    s: &Settings,
    ipv4: Option<&IptablesDecision>,
) -> Ip6tablesDecision {
    match choose_ip6tables(p, s.dockerd_args.words(), ipv4) {
        Ip6Choice::Decided(d) => d,
        Ip6Choice::NeedCheck(t) => Ip6tablesDecision {
            disable: false,
            ipv6_networks: None,
            reason: format!("not checked ({} was not run)", t.check_text()),
        },
    }
}

/// The MTU new inner networks get: the user's `--mtu`, else daemon.json's,
/// else the default route's when it is below 1500.
fn network_mtu(p: &SystemProbe, s: &Settings) -> Option<u32> {
    s.dockerd_args
        .values("mtu")
        .last()
        .and_then(|v| v.parse().ok())
        .or(p.daemon_json.mtu)
        .or(p.net.default_route_mtu.filter(|m| *m < 1500))
}

/// dockerd ≥ 24 has `--default-network-opt`: user-defined networks (compose's)
/// get the MTU too, not only the default bridge.
pub const DEFAULT_NETWORK_OPT_SINCE: (u32, u32) = (24, 0);

fn iptables_decision(p: &SystemProbe, s: &Settings) -> Option<IptablesDecision> {
    if s.dockerd_args.disabled_iptables() {
        return None;
    }
    Some(match choose_iptables(s.iptables_legacy, &p.iptables) {
        IptablesChoice::Decided(d) => d,
        IptablesChoice::NeedCheck(t) => IptablesDecision {
            backend: IptablesBackend::Nft,
            reason: format!("not checked (`{} -nL` was not run)", t.binary()),
            works: None,
        },
    })
}

/// dockerd's `--shutdown-timeout` (how long inner containers get after
/// SIGTERM): what the stop budget leaves once the main command's quarter and
/// dockerd's own reserve are taken (see `stop_budget`), so it holds whatever
/// the main command does and dockerd still ends by itself.
pub fn shutdown_timeout_secs(stop_timeout: Duration) -> u64 {
    crate::stop_budget::split(stop_timeout).inner_containers_secs
}

/// The unix socket dockerd will listen on: ours, unless daemon.json's `hosts`
/// replaces our `--host` (then its first unix socket, if it has one).
fn dockerd_socket(p: &SystemProbe, s: &Settings) -> PathBuf {
    let ours_dropped = p.daemon_json.sets("hosts");
    let user = s.dockerd_args.values("host");
    let unix = |h: &&str| h.strip_prefix("unix://").map(PathBuf::from);
    if ours_dropped {
        let file: Vec<&str> = p.daemon_json.hosts.iter().map(String::as_str).collect();
        if let Some(path) = file.iter().chain(user.iter()).find_map(unix) {
            return path;
        }
    }
    PathBuf::from(DOCKER_SOCKET)
}

/// The inner DNS decision from the probe (see `plan::dns`).
pub fn dns_plan(p: &SystemProbe, s: &Settings) -> dns::DnsPlan {
    dns::plan_dns(&dns::DnsInputs {
        resolv: p.resolv_conf.as_ref(),
        addrs: &p.net.ipv4_addrs,
        default_route_interface: p.net.default_route_interface.as_deref(),
        user_args: s.dockerd_args.words(),
        daemon_json: &p.daemon_json,
    })
}

pub fn dockerd_plan(
    p: &SystemProbe,
    s: &Settings,
    iptables_legacy: bool,
    ip6tables_off: bool,
    dns: &dns::DnsPlan,
) -> DockerdPlan {
    let socket = dockerd_socket(p, s);
    let mut ours: Vec<(&str, String)> = vec![
        ("host", format!("--host=unix://{DOCKER_SOCKET}")),
        ("group", "--group=docker".to_string()),
    ];
    let tls_dir = match &s.tls {
        TlsSetting::Off => None,
        TlsSetting::PlainTcp => {
            ours.push(("host", "--host=tcp://0.0.0.0:2375".to_string()));
            // Explicit --tls=false skips dockerd's deliberate 16 s pause for unauthenticated TCP.
            ours.push(("tls", "--tls=false".to_string()));
            None
        }
        TlsSetting::CertDir(dir) => {
            let server = dir.join("server");
            ours.push(("host", "--host=tcp://0.0.0.0:2376".to_string()));
            ours.push(("tlsverify", "--tlsverify".to_string()));
            ours.push((
                "tlscacert",
                format!("--tlscacert={}", server.join("ca.pem").display()),
            ));
            ours.push((
                "tlscert",
                format!("--tlscert={}", server.join("cert.pem").display()),
            ));
            ours.push((
                "tlskey",
                format!("--tlskey={}", server.join("key.pem").display()),
            ));
            Some(dir.clone())
        }
    };
    if let Some(mtu) = p.net.default_route_mtu.filter(|m| *m < 1500) {
        ours.push(("mtu", format!("--mtu={mtu}")));
    }
    let new_enough = p
        .versions
        .dockerd
        .major_minor()
        .is_some_and(|v| v >= DEFAULT_NETWORK_OPT_SINCE);
    if let Some(mtu) = network_mtu(p, s).filter(|_| new_enough) {
        ours.push((
            "default-network-opt",
            format!("--default-network-opt=bridge=com.docker.network.driver.mtu={mtu}"),
        ));
    }
    if ip6tables_off {
        ours.push(("ip6tables", "--ip6tables=false".to_string()));
    }
    // With --cgroupns=host our cgroup is /docker/<id>, not the tree's root:
    // inner containers go below it, so the workspace's own limits hold them.
    if let Some(v2) = p.cgroups.v2_root.as_ref().filter(|v2| v2.relative != "/") {
        if p.sysboxfs_mounts.is_empty() {
            ours.push(("cgroup-parent", format!("--cgroup-parent={}", v2.relative)));
        }
    }
    for arg in &dns.dockerd_args {
        let name = arg.trim_start_matches('-').split('=').next().unwrap_or("");
        ours.push((name, arg.clone()));
    }
    ours.push((
        "shutdown-timeout",
        format!(
            "--shutdown-timeout={}",
            shutdown_timeout_secs(s.stop_timeout)
        ),
    ));
    let args = dockerd_args::merge(ours, s.dockerd_args.words(), &p.daemon_json.keys);
    let path = if iptables_legacy {
        format!("{LEGACY_LINK_DIR}:{}", p.env.path)
    } else {
        p.env.path.clone()
    };
    DockerdPlan {
        // Resolved once from the root-only search path. None found: the bare
        // name, for `doctor` to show; app refuses to start it (and says why).
        program: p
            .dockerd_program
            .clone()
            .unwrap_or_else(|_| PathBuf::from("dockerd")),
        args,
        env: vec![("container".into(), "docker".into()), ("PATH".into(), path)],
        socket,
        iptables_legacy,
        tls_dir,
    }
}

fn step(step: Step, optional: bool, why: impl Into<String>) -> PlannedStep {
    PlannedStep {
        step,
        optional,
        blocks_dockerd: !optional,
        why: why.into(),
    }
}

/// A required group step: its failure is an error, but dockerd still starts.
fn group_step(step: Step, why: impl Into<String>) -> PlannedStep {
    PlannedStep {
        step,
        optional: false,
        blocks_dockerd: false,
        why: why.into(),
    }
}

/// Who joins the docker (or host socket) group: the workspace user, not root.
fn group_member(p: &SystemProbe) -> Option<String> {
    p.workspace_user.clone().filter(|n| n != "root")
}

fn inner_daemon_steps(
    p: &SystemProbe,
    s: &Settings,
    sysbox: bool,
    legacy: bool,
) -> Vec<PlannedStep> {
    let ipt_on = !s.dockerd_args.disabled_iptables();
    let mut steps = Vec::new();
    let stale: Vec<PathBuf> = p
        .pid_files
        .iter()
        .filter(|f| f.is_stale())
        .map(|f| f.path.clone())
        .collect();
    if !stale.is_empty() {
        steps.push(step(
            Step::RemoveStalePidFiles { files: stale },
            false,
            "pid files from an unclean stop make dockerd refuse to start",
        ));
    }
    if p.securityfs_dir && !p.securityfs_mounted {
        steps.push(step(
            Step::MountSecurityfs,
            true,
            "AppArmor inside needs /sys/kernel/security",
        ));
    }
    if let Some(v2) = &p.cgroups.v2_root {
        if v2.read_only {
            steps.push(step(
                Step::RemountCgroup2Rw {
                    mount_point: v2.path.clone(),
                },
                sysbox,
                "the cgroup2 tree is mounted read-only",
            ));
        }
        let all_enabled = v2
            .controllers
            .iter()
            .all(|c| v2.subtree_control.contains(c));
        // sysbox already puts us in a leaf cgroup; elsewhere processes in the root block delegation.
        if !sysbox && (v2.root_procs > 0 || !all_enabled) {
            steps.push(step(
                Step::CgroupV2Evacuate {
                    root: v2.path.clone(),
                    init: v2.path.join("init"),
                    controllers: v2.controllers.clone(),
                },
                false,
                "controllers can only be delegated once no process is left in the root cgroup",
            ));
        }
    }
    if !p.cgroups.v1_read_only.is_empty() {
        steps.push(step(
            Step::RemountCgroupV1Rw {
                mount_points: p.cgroups.v1_read_only.clone(),
            },
            sysbox,
            "read-only cgroup v1 hierarchies break inner containers with resource limits",
        ));
    }
    if !p.mounts.root_is_shared() {
        steps.push(step(
            Step::MakeRootRshared,
            sysbox,
            "inner containers need shared mount propagation for bind-propagation options",
        ));
    }
    if legacy {
        steps.push(step(
            Step::IptablesLegacyLinks {
                dir: PathBuf::from(LEGACY_LINK_DIR),
                version: p.iptables.legacy_version.clone(),
                links: p.iptables.legacy_links.clone(),
            },
            false,
            "dockerd must use the same iptables backend as the rules already in the kernel",
        ));
    }
    // dockerd runs the plain `iptables` for nft: only DOCKER_IPTABLES_LEGACY="" (nft asked
    // for by name) must move an image whose alternatives point at legacy.
    let variant = if legacy {
        Some("legacy")
    } else {
        (s.iptables_legacy == Some(false)).then_some("nft")
    };
    if let Some(variant) = variant.filter(|_| ipt_on) {
        let set = alternatives_to_set(p, variant);
        if !set.is_empty() {
            steps.push(step(
                Step::SetIptablesAlternatives { set },
                true,
                format!("the workspace's own iptables command shows the rules dockerd makes ({variant})"),
            ));
        }
    }
    if let TlsSetting::CertDir(dir) = &s.tls {
        steps.push(step(
            Step::GenerateTls {
                dir: dir.clone(),
                extra_sans: s.tls_san.clone(),
                hostname: p.hostname.clone(),
                ips: p.interface_ips.clone(),
            },
            false,
            "DOCKER_TLS_CERTDIR is set: dockerd listens on tcp 2376 with TLS",
        ));
    }
    steps.push(group_step(
        Step::EnsureDockerGroup {
            gid: s.docker_gid,
            member: group_member(p),
        },
        "the socket is root:docker 0660 and the workspace user is in docker",
    ));
    steps
}

/// For each iptables alternative (`/etc/alternatives/iptables` → `/usr/sbin/iptables-nft`)
/// not yet on `variant`: (name, the same directory's `NAME-VARIANT`).
pub fn alternatives_to_set(p: &SystemProbe, variant: &str) -> Vec<(String, PathBuf)> {
    p.iptables
        .alternatives
        .iter()
        .filter_map(|(name, target)| {
            let want = target.with_file_name(format!("{name}-{variant}"));
            (*target != want).then(|| (name.clone(), want))
        })
        .collect()
}

/// Problems in daemon.json and between it and our or the user's flags.
fn daemon_json_warnings(p: &SystemProbe, s: &Settings, socket: &Path) -> Vec<Warning> {
    let dj = &p.daemon_json;
    let file = dj.path.display();
    let mut w = Vec::new();
    if let Some(e) = &dj.error {
        w.push(warn(
            format!("dockerd's configuration file {file} cannot be used: {e}; dockerd will refuse to start"),
            format!("fix or remove {file} (it must be one JSON object, e.g. {{\"mtu\": 1400}}); `python3 -m json.tool {file}` shows where it breaks"),
        ));
    }
    for key in &dj.keys {
        let flag = dockerd_args::FLAG_CONFIG_KEYS
            .iter()
            .find(|(_, k)| k == key)
            .map_or(key.as_str(), |(f, _)| f);
        if s.dockerd_args.gave(flag) {
            w.push(warn(
                format!("WS_DOCKERD_ARGS gives --{flag} and {file} sets \"{key}\": dockerd refuses to start when a setting comes from both"),
                format!("keep only one: drop --{flag} from WS_DOCKERD_ARGS or \"{key}\" from {file}"),
            ));
        }
    }
    let ours = format!("unix://{DOCKER_SOCKET}");
    let listens_on_ours = dj
        .hosts
        .iter()
        .map(String::as_str)
        .chain(s.dockerd_args.values("host"))
        .any(|h| h == ours);
    if dj.sets("hosts") && !listens_on_ours {
        let message = if socket == Path::new(DOCKER_SOCKET) {
            format!("{file} sets \"hosts\" without a unix socket: ws-init cannot tell when dockerd is ready, and the docker CLI finds no {DOCKER_SOCKET}")
        } else {
            format!("{file} sets \"hosts\": dockerd listens on {} instead of {DOCKER_SOCKET}, where the docker CLI looks", socket.display())
        };
        w.push(warn(
            message,
            format!("add \"{ours}\" to \"hosts\" in {file}"),
        ));
    }
    w
}

fn inner_daemon_warnings(
    p: &SystemProbe,
    s: &Settings,
    ipt: Option<&IptablesDecision>,
    sysbox: bool,
) -> Vec<Warning> {
    let mut w = Vec::new();
    if p.docker_storage.fs_type.as_deref() == Some("overlay") {
        w.push(warn(
            "/var/lib/docker is on the container's overlay filesystem: dockerd cannot use overlay2 there and falls back to the slow vfs driver",
            "mount a volume there: -v ws-docker:/var/lib/docker (Kubernetes: an emptyDir)".to_string(),
        ));
    } else if p.containerd_storage.fs_type.as_deref() == Some("overlay") {
        // Only a mount of its own can put it elsewhere than /var/lib/docker.
        w.push(warn(
            format!("{} (containerd's images and snapshots) is on an overlay filesystem: its overlayfs snapshotter cannot work there", p.containerd_storage.path.display()),
            format!("mount a volume on {}, or none at all so it stays on the /var/lib/docker volume", p.containerd_storage.path.display()),
        ));
    }
    if p.apparmor_kernel && !p.apparmor_parser && !sysbox {
        w.push(warn(
            "AppArmor is on in the host kernel but apparmor_parser is missing: dockerd 20.10 then cannot load its default profile and every inner `docker run` fails",
            "install the apparmor package in the image (the ws-init image has it), or run inner containers with --security-opt apparmor=unconfined".to_string(),
        ));
    }
    if !p.lib_modules {
        w.push(warn(
            "/lib/modules is missing: dockerd cannot load kernel modules (br_netfilter, ip_tables); this only matters if the host has not loaded them",
            "-v /lib/modules:/lib/modules:ro".to_string(),
        ));
    }
    if let Some(d) = ipt {
        if d.works == Some(false) {
            w.push(warn(
                format!("iptables does not work here ({}): inner containers will have no network", d.reason),
                "load the ip_tables/nf_tables modules on the host, or pass WS_DOCKERD_ARGS=\"--iptables=false\"".to_string(),
            ));
        }
    }
    let missing = p.caps.missing_essential();
    if !missing.is_empty() {
        w.push(warn(
            format!(
                "capabilities dockerd and runc need are missing: {}",
                missing.join(", ")
            ),
            "run with --privileged, or --cap-add ALL".to_string(),
        ));
    }
    if !sysbox && p.seccomp == Some(2) {
        w.push(warn(
            "a seccomp filter is active: some system calls of inner containers may be refused",
            "run with --privileged or --security-opt seccomp=unconfined".to_string(),
        ));
    }
    if !sysbox && p.userns.in_user_namespace {
        w.push(warn(
            "ws-init runs in a user namespace without sysbox: an inner dockerd may fail to mount or create devices",
            "run with --runtime=sysbox-runc, or on a rootful engine with --privileged".to_string(),
        ));
    }
    if let (TlsSetting::PlainTcp, false) = (&s.tls, s.dockerd_args.gave("tls")) {
        w.push(warn(
            "DOCKER_TLS_CERTDIR is set but empty: dockerd listens on tcp 2375 without authentication",
            "set DOCKER_TLS_CERTDIR=/certs for TLS, or unset it for the unix socket only".to_string(),
        ));
    }
    w
}

fn host_socket_plan(
    p: &SystemProbe,
    path: &Path,
    gid: u32,
    answers: bool,
) -> (Vec<PlannedStep>, Vec<Warning>) {
    let mut steps = Vec::new();
    let mut w = Vec::new();
    let sock = [Some(&p.docker_socket), p.docker_host_socket.as_ref()]
        .into_iter()
        .flatten()
        .find(|s| s.path == path);
    let mode = sock.and_then(|s| s.mode).unwrap_or(0o660);
    if !answers {
        let detail = match sock.map(|s| &s.ping) {
            Some(crate::probe::Ping::Failed(e)) => e.clone(),
            _ => "no answer".to_string(),
        };
        w.push(warn(
            format!(
                "the Docker socket {} does not answer: {detail}",
                path.display()
            ),
            "check that the engine on the host is running, and that the mounted path is its socket"
                .to_string(),
        ));
    }
    if mode & 0o006 == 0o006 {
        // World-usable socket: no group needed (we never make it so ourselves).
        return (steps, w);
    }
    if gid == 0 {
        w.push(warn(
            format!("the socket {} belongs to group 0 (root): the workspace user is not added to root's group", path.display()),
            "on the host, give the socket a dedicated group (e.g. chgrp docker), or run the main command as root with WS_USER=root".to_string(),
        ));
        return (steps, w);
    }
    if p.is_root() {
        steps.push(group_step(
            Step::AddUserToSocketGroup {
                gid,
                member: group_member(p),
            },
            format!(
                "the socket is group {gid} with mode {mode:o}: the workspace user joins that group"
            ),
        ));
    } else if p.egid != Some(gid) && !p.groups.contains(&gid) {
        w.push(warn(
            format!("ws-init is not root and not in the socket's group {gid}: the docker CLI will get `permission denied`"),
            format!("run with --group-add {gid} (Kubernetes: securityContext.supplementalGroups: [{gid}])"),
        ));
    }
    (steps, w)
}

/// What doctor says about an unknown dockerd version (no warning at start:
/// the behaviour that suits every version is kept).
fn version_notes(p: &SystemProbe) -> Vec<String> {
    let d = &p.versions.dockerd;
    if d.version.is_some() {
        return Vec::new();
    }
    vec![match &d.binary {
        Some(b) => format!(
            "dockerd's version is unknown ({} is not from the docker.io package): inner user-defined networks keep MTU 1500 and ip6tables is left to dockerd's default",
            b.display()
        ),
        None => "no dockerd on PATH".to_string(),
    }]
}

fn rootless_plan(
    p: &SystemProbe,
    r: &crate::rootless::probe::RootlessProbe,
    s: &Settings,
) -> (Vec<PlannedStep>, Vec<Warning>, Option<DockerdPlan>) {
    use crate::rootless::plan as rp;
    let mut steps: Vec<PlannedStep> = rp::steps(p, r, s)
        .into_iter()
        .map(|action| {
            // The CLI context is a convenience: DOCKER_HOST works without it.
            let optional = matches!(action, rp::RootlessStep::ClientContext { .. });
            let why = action.why();
            step(Step::Rootless { action }, optional, why)
        })
        .collect();
    if !p.mounts.root_is_shared() {
        steps.push(step(
            Step::MakeRootRshared,
            true,
            "inner containers need shared mount propagation for bind-propagation options",
        ));
    }
    let dockerd = r.user.as_ref().map(|u| rp::dockerd_plan(p, u, s));
    (steps, rp::warnings(p, s), dockerd)
}

/// The whole plan: mode, steps in the order to apply them, dockerd's command, warnings.
pub fn make_plan(p: &SystemProbe, s: &Settings) -> Plan {
    let mode = decide_mode(p, s);
    let mut steps = Vec::new();
    let mut warnings = Vec::new();
    let mut dockerd = None;
    let mut ipt = None;
    let mut ip6 = None;
    let mut notes = Vec::new();
    let mut dns = None;
    match &mode {
        DockerMode::Disabled | DockerMode::Impossible { .. } => {}
        DockerMode::Remote { host, kind } => {
            if *kind == RemoteKind::Unix {
                warnings.push(warn(
                    format!("DOCKER_HOST={host} names no socket"),
                    "mount the socket there, or fix DOCKER_HOST".to_string(),
                ));
            }
        }
        DockerMode::HostSocket {
            path, gid, answers, ..
        } => {
            let (st, w) = host_socket_plan(p, path, *gid, *answers);
            steps = st;
            warnings = w;
        }
        DockerMode::Sysbox | DockerMode::InnerDaemon { .. } => {
            let sysbox = mode == DockerMode::Sysbox;
            ipt = iptables_decision(p, s);
            let legacy = ipt
                .as_ref()
                .is_some_and(|d| d.backend == IptablesBackend::Legacy);
            let six = ip6tables_decision(p, s, ipt.as_ref());
            steps = inner_daemon_steps(p, s, sysbox, legacy);
            warnings = inner_daemon_warnings(p, s, ipt.as_ref(), sysbox);
            if six.disable {
                warnings.push(warn(
                    format!("ip6tables cannot work here ({}): dockerd gets --ip6tables=false, so IPv6 inner networks are unavailable", six.reason),
                    "load the ip6_tables and ip6table_nat modules on the host, or pass WS_DOCKERD_ARGS=\"--ip6tables=false\" to accept it".to_string(),
                ));
            }
            let d = dns_plan(p, s);
            if d.decision == dns::DnsDecision::Unavailable {
                warnings.push(warn(
                    format!(
                        "inner containers cannot resolve what the workspace resolves: {}",
                        d.why
                    ),
                    "give dockerd reachable servers: WS_DOCKERD_ARGS=\"--dns=IP\"".to_string(),
                ));
            }
            let daemon = dockerd_plan(p, s, legacy, six.disable, &d);
            warnings.extend(daemon_json_warnings(p, s, &daemon.socket));
            notes = version_notes(p);
            dockerd = Some(daemon);
            ip6 = Some(six);
            dns = Some(d);
        }
        DockerMode::Rootless { .. } => {
            if let Some(r) = &p.rootless {
                (steps, warnings, dockerd) = rootless_plan(p, r, s);
                // Inner DNS as for the rootful daemon: slirp4netns reaches the
                // workspace's own address, where ws-init (root) runs the forwarder.
                let d = dns_plan(p, s);
                if let Some(daemon) = dockerd.as_mut() {
                    daemon.args.extend(d.dockerd_args.iter().cloned());
                    dns = Some(d);
                }
            }
        }
    }
    Plan {
        mode,
        steps,
        dockerd,
        iptables: ipt,
        ip6tables: ip6,
        dns,
        warnings,
        notes,
    }
}

#[cfg(test)]
pub(crate) mod tests;
