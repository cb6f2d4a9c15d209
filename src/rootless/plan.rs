//! Rootless decisions (pure): which prerequisites hold, the subordinate id
//! ranges to add, the data root, the steps, and rootlesskit + dockerd's command.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::probe::{IdRange, RootlessProbe, RootlessUser, SubIdEntry};
use crate::config::{Settings, TlsSetting};
use crate::plan::{dockerd_args, shutdown_timeout_secs, DockerdPlan, Warning};
use crate::probe::{SystemProbe, DOCKER_DATA_ROOT};

/// `/run/user/<uid>`: the user's runtime directory (`XDG_RUNTIME_DIR`).
pub fn runtime_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/run/user/{uid}"))
}

/// The rootless dockerd's socket for `uid`.
pub fn socket_path(uid: u32) -> PathBuf {
    runtime_dir(uid).join("docker.sock")
}

/// Ids given to the user's namespace: 65536 covers every uid an image uses
/// (nobody is 65534), as `useradd` and dockerd-rootless-setuptool allocate.
pub const SUBID_COUNT: u64 = 65536;
/// Subordinate ranges start above the ids of real users (useradd's SUB_UID_MIN).
pub const SUBID_MIN: u64 = 100_000;
pub const SUBUID_FILE: &str = "/etc/subuid";
pub const SUBGID_FILE: &str = "/etc/subgid";
/// The MTU of rootlesskit's tap device with slirp4netns (upstream's choice: fast).
pub const SLIRP_MTU: u32 = 65520;
/// Name of the docker CLI context written for the user (the one
/// dockerd-rootless-setuptool.sh creates).
pub const CONTEXT_NAME: &str = "rootless";

/// What `prepare` does for rootless mode, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RootlessStep {
    /// Append `line` (`user:start:count`) to `file` (/etc/subuid or /etc/subgid).
    AddSubIds { file: PathBuf, line: String },
    /// `mknod /dev/net/tun c 10 200` (rootlesskit's tap device needs it).
    CreateTun,
    /// `/run/user/<uid>`: a fresh tmpfs (no stale pid files after a restart), 0700, the user's.
    RuntimeDir { path: PathBuf, uid: u32, gid: u32 },
    /// The data root: its own directory under the volume, owned by the user;
    /// the volume itself (maybe a rootful data root) is never chowned.
    DataRoot {
        volume: PathBuf,
        path: PathBuf,
        uid: u32,
        gid: u32,
    },
    /// A `rootless` docker CLI context, current unless the user chose another,
    /// in `home`'s `.docker` (plain `docker` then needs no DOCKER_HOST).
    ClientContext {
        home: PathBuf,
        uid: u32,
        gid: u32,
        socket: PathBuf,
    },
}

impl RootlessStep {
    pub fn name(&self) -> &'static str {
        match self {
            RootlessStep::AddSubIds { .. } => "rootless-add-subids",
            RootlessStep::CreateTun => "rootless-create-tun",
            RootlessStep::RuntimeDir { .. } => "rootless-runtime-dir",
            RootlessStep::DataRoot { .. } => "rootless-data-root",
            RootlessStep::ClientContext { .. } => "rootless-client-context",
        }
    }

    /// Why the step is needed (doctor's and the log's `why`).
    pub fn why(&self) -> &'static str {
        match self {
            RootlessStep::AddSubIds { .. } => {
                "newuidmap/newgidmap map the inner ids to the user's subordinate range"
            }
            RootlessStep::CreateTun => "rootlesskit's slirp4netns network needs a tap device",
            RootlessStep::RuntimeDir { .. } => {
                "the rootless dockerd keeps its socket, pid file and state in XDG_RUNTIME_DIR"
            }
            RootlessStep::DataRoot { .. } => {
                "the rootless dockerd stores images on the volume, in a directory it owns"
            }
            RootlessStep::ClientContext { .. } => {
                "plain `docker` reaches the rootless socket without DOCKER_HOST"
            }
        }
    }

    pub fn text(&self) -> String {
        match self {
            RootlessStep::AddSubIds { file, line } => {
                format!("add {line} to {}", file.display())
            }
            RootlessStep::CreateTun => "create /dev/net/tun (c 10 200)".into(),
            RootlessStep::RuntimeDir { path, uid, .. } => {
                format!("mount a tmpfs on {} (0700, uid {uid})", path.display())
            }
            RootlessStep::DataRoot { path, uid, .. } => {
                format!("create {} owned by uid {uid}", path.display())
            }
            RootlessStep::ClientContext { home, socket, .. } => format!(
                "docker CLI context {CONTEXT_NAME} ({}) in {}/.docker",
                socket.display(),
                home.display()
            ),
        }
    }
}

/// One prerequisite as doctor shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prerequisite {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// How to fix it when not ok.
    pub fix: Option<String>,
}

fn check(
    name: &'static str,
    ok: bool,
    detail: impl Into<String>,
    fix: Option<String>,
) -> Prerequisite {
    Prerequisite {
        name,
        ok,
        detail: detail.into(),
        fix: if ok { None } else { fix },
    }
}

/// What rootless cannot do in a workspace, said by doctor, at startup and in README.
pub fn limitations(p: &SystemProbe, r: &RootlessProbe) -> Vec<String> {
    let mut l = vec![
        "resource limits (docker run --memory, --cpus, --pids-limit) are not applied: rootless dockerd only gets a cgroup driver from a systemd user instance that delegates cgroups, and a workspace has none".to_string(),
    ];
    if p.cgroups.v2_root.is_none() {
        l.push(
            "this container has cgroup v1, where rootless Docker can never apply resource limits"
                .into(),
        );
    }
    match r.unprivileged_port_start {
        Some(0) => {}
        start => l.push(format!(
            "published ports below {} cannot be bound (the port forwarder runs as the workspace user); fix: docker run --sysctl net.ipv4.ip_unprivileged_port_start=0 for the workspace",
            start.unwrap_or(1024)
        )),
    }
    l.push("inner containers cannot reach the workspace's 127.0.0.1 (rootlesskit --disable-host-loopback)".into());
    l
}

/// The first free range of `count` ids in the ids that exist here (`map`),
/// from `SUBID_MIN` on, clear of every existing range and of `reserved`.
pub fn allocate_range(
    existing: &[SubIdEntry],
    map: &[IdRange],
    reserved: u64,
    count: u64,
) -> Option<u64> {
    let mut taken: Vec<(u64, u64)> = existing.iter().map(|e| (e.start, e.end())).collect();
    taken.push((reserved, reserved + 1));
    let mut ranges: Vec<IdRange> = map.to_vec();
    ranges.sort_by_key(|r| r.start);
    for r in ranges {
        let end = r.start.saturating_add(r.count);
        let mut s = r.start.max(SUBID_MIN);
        loop {
            if s.saturating_add(count) > end {
                break;
            }
            match taken
                .iter()
                .filter(|(a, b)| *a < s + count && s < *b)
                .map(|(_, b)| *b)
                .max()
            {
                Some(next) => s = next,
                None => return Some(s),
            }
        }
    }
    None
}

/// What to do about one of /etc/subuid, /etc/subgid for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubIds {
    /// The user has ranges there (total count).
    Present(u64),
    /// Append this line.
    Add(String),
    /// No free range of `SUBID_COUNT` ids exists in this namespace.
    NoRoom,
}

pub fn subids(
    entries: Option<&[SubIdEntry]>,
    map: &[IdRange],
    user: &RootlessUser,
    own_id: u32,
) -> SubIds {
    let entries = entries.unwrap_or(&[]);
    let mine: u64 = entries
        .iter()
        .filter(|e| e.owner == user.name || e.owner == user.uid.to_string())
        .map(|e| e.count)
        .sum();
    if mine > 0 {
        return SubIds::Present(mine);
    }
    match allocate_range(entries, map, own_id as u64, SUBID_COUNT) {
        Some(start) => SubIds::Add(format!("{}:{start}:{SUBID_COUNT}", user.name)),
        None => SubIds::NoRoom,
    }
}

/// The rootless data root: `/var/lib/docker/rootless/<user>`, so a rootful
/// data root already on the volume stays as it is.
pub fn data_root(user: &RootlessUser) -> PathBuf {
    Path::new(DOCKER_DATA_ROOT)
        .join("rootless")
        .join(&user.name)
}

/// Every prerequisite, in the order doctor lists them.
pub fn prerequisites(p: &SystemProbe, r: &RootlessProbe) -> Vec<Prerequisite> {
    let mut out = Vec::new();
    let user_ok = r.user.as_ref().is_some_and(|u| u.uid != 0);
    out.push(check(
        "user",
        user_ok,
        match &r.user {
            Some(u) if u.uid != 0 => format!("dockerd runs as {} (uid {})", u.name, u.uid),
            Some(_) => format!("the workspace user {:?} is root", r.user_name),
            None => format!("user {:?} is not in /etc/passwd", r.user_name),
        },
        Some("set WS_USER to a non-root user of the image (the default is workspace)".into()),
    ));
    let userns_detail;
    let (userns_ok, userns_fix) = if r.max_user_namespaces == Some(0) {
        userns_detail =
            "user namespaces are switched off (user.max_user_namespaces = 0)".to_string();
        (
            false,
            "on the host: sysctl -w user.max_user_namespaces=15000",
        )
    } else if r.unprivileged_userns_clone == Some(0) {
        userns_detail = "unprivileged users may not create user namespaces (kernel.unprivileged_userns_clone = 0)".to_string();
        (
            false,
            "on the host: sysctl -w kernel.unprivileged_userns_clone=1",
        )
    } else if r.apparmor_restrict_userns == Some(1) {
        userns_detail = "AppArmor takes every capability from unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)".to_string();
        (
            false,
            "on the host: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        )
    } else {
        userns_detail = match r.max_user_namespaces {
            Some(n) => format!("allowed (user.max_user_namespaces = {n})"),
            None => "allowed (no sysctl says otherwise)".into(),
        };
        (true, "")
    };
    out.push(check(
        "user_namespaces",
        userns_ok,
        userns_detail,
        Some(userns_fix.into()),
    ));
    let missing: Vec<&str> = r
        .programs
        .iter()
        .filter(|(_, at)| at.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    out.push(check(
        "programs",
        missing.is_empty(),
        if missing.is_empty() {
            "rootlesskit, slirp4netns, newuidmap, newgidmap, ip and dockerd are on PATH".to_string()
        } else {
            format!("missing on PATH: {}", missing.join(", "))
        },
        Some("install the packages rootlesskit slirp4netns uidmap iproute2 in the image (the ws-init image has them)".into()),
    ));
    if let Some(u) = r.user.as_ref().filter(|_| user_ok) {
        for (name, file, entries, map, own) in [
            ("subuid", SUBUID_FILE, &r.subuid, &r.uid_map, u.uid),
            ("subgid", SUBGID_FILE, &r.subgid, &r.gid_map, u.gid),
        ] {
            let (ok, detail) = match subids(entries.as_deref(), map, u, own) {
                SubIds::Present(n) if n < SUBID_COUNT => (true, format!("{} has {n} ids in {file} (fewer than {SUBID_COUNT}: images with higher uids fail to unpack)", u.name)),
                SubIds::Present(n) => (true, format!("{} has {n} ids in {file}", u.name)),
                SubIds::Add(line) => (true, format!("none yet: ws-init adds {line} to {file}")),
                SubIds::NoRoom => (false, format!("{} has no range in {file} and no {SUBID_COUNT} free ids exist in this container's user namespace", u.name)),
            };
            out.push(check(name, ok, detail, Some(format!("add a range for {} to {file} in the image, or run the workspace without a user namespace (no userns-remap)", u.name))));
        }
    }
    out.push(check(
        "tun",
        true,
        if r.dev_net_tun {
            "/dev/net/tun exists".to_string()
        } else {
            "/dev/net/tun is missing: ws-init creates it (if that is refused: docker run --device /dev/net/tun)".to_string()
        },
        None,
    ));
    let fs = p.docker_storage.fs_type.as_deref().unwrap_or("unknown");
    out.push(check(
        "storage",
        true,
        if fs == "overlay" {
            format!("{DOCKER_DATA_ROOT} is on the container's overlayfs: overlay2 fails there and dockerd falls back to the slow vfs (mount a volume: -v ws-docker:{DOCKER_DATA_ROOT})")
        } else {
            format!("{DOCKER_DATA_ROOT} on {fs}: overlay2 works in the user namespace on recent kernels")
        },
        None,
    ));
    out
}

/// What stops rootless mode (each with its fix), for `DockerMode::Impossible`.
pub fn blockers(p: &SystemProbe, r: &RootlessProbe) -> Vec<String> {
    prerequisites(p, r)
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| match c.fix {
            Some(f) => format!("rootless: {} (fix: {f})", c.detail),
            None => format!("rootless: {}", c.detail),
        })
        .collect()
}

/// The steps, in order. Call only when `blockers` is empty.
pub fn steps(p: &SystemProbe, r: &RootlessProbe, s: &Settings) -> Vec<RootlessStep> {
    let Some(u) = r.user.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (file, entries, map, own) in [
        (SUBUID_FILE, &r.subuid, &r.uid_map, u.uid),
        (SUBGID_FILE, &r.subgid, &r.gid_map, u.gid),
    ] {
        if let SubIds::Add(line) = subids(entries.as_deref(), map, u, own) {
            out.push(RootlessStep::AddSubIds {
                file: file.into(),
                line,
            });
        }
    }
    if !r.dev_net_tun {
        out.push(RootlessStep::CreateTun);
    }
    out.push(RootlessStep::RuntimeDir {
        path: runtime_dir(u.uid),
        uid: u.uid,
        gid: u.gid,
    });
    if !s.dockerd_args.gave("data-root") {
        out.push(RootlessStep::DataRoot {
            volume: DOCKER_DATA_ROOT.into(),
            path: data_root(u),
            uid: u.uid,
            gid: u.gid,
        });
    }
    let socket = socket_path(u.uid);
    out.push(RootlessStep::ClientContext {
        home: u.home.clone(),
        uid: u.uid,
        gid: u.gid,
        socket: socket.clone(),
    });
    // Root's CLI too: `docker exec` without -u runs as root.
    if u.home != Path::new("/root") && p.is_root() {
        out.push(RootlessStep::ClientContext {
            home: "/root".into(),
            uid: 0,
            gid: 0,
            socket,
        });
    }
    out
}

pub fn warnings(p: &SystemProbe, s: &Settings) -> Vec<Warning> {
    let mut w = Vec::new();
    if p.docker_storage.fs_type.as_deref() == Some("overlay") {
        w.push(Warning {
            message: format!("{DOCKER_DATA_ROOT} is on the container's overlay filesystem: rootless dockerd cannot use overlay2 there and falls back to the slow vfs driver"),
            fix: Some(format!("mount a volume there: -v ws-docker:{DOCKER_DATA_ROOT} (Kubernetes: an emptyDir)")),
        });
    }
    if s.tls != TlsSetting::Off {
        w.push(Warning {
            message: "DOCKER_TLS_CERTDIR is ignored in rootless mode: the rootless dockerd listens on the workspace user's unix socket only".into(),
            fix: Some("unset DOCKER_TLS_CERTDIR, or unset WS_DOCKER_ROOTLESS for a TCP listener".into()),
        });
    }
    w
}

/// rootlesskit's flags (those of dockerd-rootless.sh), then dockerd's.
pub fn dockerd_plan(p: &SystemProbe, user: &RootlessUser, s: &Settings) -> DockerdPlan {
    let runtime = runtime_dir(user.uid);
    let socket = socket_path(user.uid);
    let mut ours: Vec<(&str, String)> = vec![
        ("host", format!("--host=unix://{}", socket.display())),
        (
            "data-root",
            format!("--data-root={}", data_root(user).display()),
        ),
        (
            "exec-root",
            format!("--exec-root={}", runtime.join("docker").display()),
        ),
        (
            "pidfile",
            format!("--pidfile={}", runtime.join("docker.pid").display()),
        ),
    ];
    if let Some(mtu) = p.net.default_route_mtu.filter(|m| *m < 1500) {
        ours.push(("mtu", format!("--mtu={mtu}")));
    }
    ours.push((
        "shutdown-timeout",
        format!(
            "--shutdown-timeout={}",
            shutdown_timeout_secs(s.stop_timeout)
        ),
    ));
    let mut args: Vec<String> = [
        "--net=slirp4netns".to_string(),
        format!("--mtu={SLIRP_MTU}"),
        "--slirp4netns-sandbox=auto".into(),
        "--slirp4netns-seccomp=auto".into(),
        "--disable-host-loopback".into(),
        "--port-driver=builtin".into(),
        "--copy-up=/etc".into(),
        "--copy-up=/run".into(),
        "--propagation=rslave".into(),
        "dockerd".into(),
    ]
    .into();
    // Rootless dockerd reads ~/.config/docker/daemon.json, which the user owns
    // and may change at any time: a clash there is the user's to see in the log.
    args.extend(dockerd_args::merge(ours, s.dockerd_args.words(), &[]));
    // The file the probe found on the fixed search path (as for the rootful dockerd),
    // so the log names it and every restart runs the same one.
    let rootlesskit = p
        .rootless
        .as_ref()
        .and_then(|r| r.programs.iter().find(|(name, _)| name == "rootlesskit"))
        .and_then(|(_, at)| at.clone())
        .unwrap_or_else(|| PathBuf::from("rootlesskit"));
    DockerdPlan {
        program: rootlesskit,
        args,
        env: vec![
            ("container".into(), "docker".into()),
            ("PATH".into(), p.env.path.clone()),
            ("XDG_RUNTIME_DIR".into(), runtime.display().to_string()),
        ],
        socket,
        iptables_legacy: false,
        tls_dir: None,
    }
}

/// Doctor's view of rootless mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootlessReport {
    pub user: Option<String>,
    pub socket: Option<PathBuf>,
    pub data_root: Option<PathBuf>,
    pub prerequisites: Vec<Prerequisite>,
    pub limitations: Vec<String>,
}

pub fn report(p: &SystemProbe, r: &RootlessProbe) -> RootlessReport {
    let user = r.user.as_ref().filter(|u| u.uid != 0);
    RootlessReport {
        user: user.map(|u| u.name.clone()),
        socket: user.map(|u| socket_path(u.uid)),
        data_root: user.map(data_root),
        prerequisites: prerequisites(p, r),
        limitations: limitations(p, r),
    }
}

#[cfg(test)]
mod tests;
