//! Read the system into plain data (design §6). Nothing here decides: `plan` does.
//!
//! Every reader takes a root directory, so tests run the same code on captured
//! fixture trees (`tests/fixtures/<case>/proc/self/mountinfo`, ...). The real
//! system is `probe_real`, `probe_root("/")`; the iptables command checks run
//! only as far as the plan asks for them (`bringup::probe_system`).

pub mod binaries;
pub mod caps;
pub mod cgroup;
pub mod daemon_json;
pub mod iptables;
pub mod mountinfo;
pub mod net;
pub mod resolv;
pub mod socket;
pub mod versions;

use std::path::{Path, PathBuf};

use crate::config::Settings;

pub use caps::{CapLevel, CapsProbe, StatusFields, UserNamespace};
pub use cgroup::{CgroupLayout, CgroupProbe, CgroupV2Root};
pub use daemon_json::DaemonJson;
pub use iptables::{IptablesProbe, IptablesTool};
pub use mountinfo::{Mount, MountInfo};
pub use net::NetProbe;
pub use socket::{Ping, SocketProbe};
pub use versions::{ComponentVersion, VersionsProbe};

pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub const DOCKER_DATA_ROOT: &str = "/var/lib/docker";
/// dockerd's own containerd (started by dockerd, `--containerd` not given) keeps
/// its root here, image content included with the containerd image store.
pub const CONTAINERD_DATA_ROOT: &str = "/var/lib/docker/containerd/daemon";

/// Environment facts the probe needs beyond `Settings`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeEnv {
    /// Where programs run as root are looked for (dockerd gets it as its
    /// PATH): the root-only directories of [`binaries::SEARCH_PATH`], never
    /// the caller's PATH.
    pub path: String,
}

impl ProbeEnv {
    pub fn from_process() -> Self {
        ProbeEnv {
            path: binaries::trusted_dirs(Path::new("/"), binaries::SEARCH_PATH),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StorageProbe {
    pub path: PathBuf,
    /// Filesystem type holding the path (longest mount-point prefix in mountinfo).
    pub fs_type: Option<String>,
    /// The path is its own mount (a volume or bind mount), not the container's root fs.
    pub is_mount_point: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PidFile {
    pub path: PathBuf,
    pub pid: Option<i32>,
    /// Name of the live process with that pid, if any.
    pub running: Option<String>,
}

impl PidFile {
    /// Left over from an earlier run: no dockerd/containerd lives under that pid now.
    /// (A live unrelated process with a reused pid still makes the file stale.)
    pub fn is_stale(&self) -> bool {
        ws_init_core::pidfiles::is_stale(self.running.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SystemProbe {
    pub root: PathBuf,
    pub env: ProbeEnv,
    /// dockerd's absolute path from `env.path` (see [`binaries::resolve`]),
    /// or why none is usable.
    pub dockerd_program: Result<PathBuf, String>,
    /// Effective uid/gid and supplementary groups of ws-init.
    pub euid: Option<u32>,
    pub egid: Option<u32>,
    pub groups: Vec<u32>,
    pub seccomp: Option<u32>,
    /// `/proc/self/attr/current` (e.g. `docker-default (enforce)`), when readable.
    pub apparmor_profile: Option<String>,
    pub mounts: MountInfo,
    pub cgroups: CgroupProbe,
    pub caps: CapsProbe,
    pub userns: UserNamespace,
    pub sysboxfs_mounts: Vec<PathBuf>,
    pub docker_socket: SocketProbe,
    /// The socket named by a `unix://` DOCKER_HOST, when that is another path.
    pub docker_host_socket: Option<SocketProbe>,
    pub docker_host: Option<String>,
    pub net: NetProbe,
    /// `/etc/resolv.conf`; `None` when unreadable (the error is in `errors`).
    pub resolv_conf: Option<resolv::ResolvConf>,
    pub docker_storage: StorageProbe,
    /// Where dockerd's managed containerd keeps its state (images with the
    /// containerd image store): `/var/lib/docker/containerd` unless it is its own mount.
    pub containerd_storage: StorageProbe,
    pub iptables: IptablesProbe,
    /// dockerd's, containerd's and runc's versions from dpkg's database.
    pub versions: VersionsProbe,
    /// dockerd's configuration file (`--config-file` in WS_DOCKERD_ARGS, else /etc/docker/daemon.json).
    pub daemon_json: DaemonJson,
    pub securityfs_dir: bool,
    pub securityfs_mounted: bool,
    pub lib_modules: bool,
    /// The host kernel has AppArmor on (`/sys/module/apparmor/parameters/enabled` is Y).
    pub apparmor_kernel: bool,
    /// `apparmor_parser` is on PATH (dockerd 20.10 needs it when AppArmor is on).
    pub apparmor_parser: bool,
    pub dev_kmsg: bool,
    pub pid_files: Vec<PidFile>,
    /// Live processes named dockerd in our pid namespace (our own inner daemon).
    pub dockerd_pids: Vec<i32>,
    /// PID 1's name and effective uid: doctor run by another user says how PID 1 sees things.
    pub pid1_comm: Option<String>,
    pub pid1_euid: Option<u32>,
    /// What rootless mode needs; probed only with `WS_DOCKER_ROOTLESS` on.
    pub rootless: Option<crate::rootless::probe::RootlessProbe>,
    /// The passwd name of the user the main command runs as (`WS_USER` or
    /// the default rule), when it has an entry: it joins the docker group.
    pub workspace_user: Option<String>,
    /// `/etc/hostname`, else the kernel's: the TLS server certificate names it.
    pub hostname: String,
    /// Every address of every interface, loopback included (upstream's SAN list).
    pub interface_ips: Vec<std::net::IpAddr>,
    /// Inputs that could not be read or parsed (shown by doctor).
    pub errors: Vec<String>,
}

impl SystemProbe {
    pub fn is_root(&self) -> bool {
        self.euid == Some(0)
    }
}

fn rel(p: &Path) -> &Path {
    p.strip_prefix("/").unwrap_or(p)
}

use ws_init_core::pidfiles::comm_of;

/// `docker*.pid` files under /run and /var/run, like upstream's
/// `find /run /var/run -iname 'docker*.pid'` (depth-bounded; a /var/run symlink is not followed twice),
/// plus dockerd's `containerd.pid`, which upstream leaves: after `docker kill` and
/// `docker start` its old pid can belong to a `docker exec` or healthcheck in the
/// new container, and dockerd then waits for a containerd that is not there and
/// exits ("timeout waiting for containerd to start", seen in the e2e restart test).
pub fn find_pid_files(root: &Path) -> Vec<PidFile> {
    ws_init_core::pidfiles::candidates(root)
        .into_iter()
        .map(|p| {
            let pid = ws_init_core::pidfiles::read_pid(&p);
            PidFile {
                running: pid.and_then(|pid| comm_of(root, pid)),
                path: Path::new("/").join(p.strip_prefix(root).unwrap_or(&p)),
                pid,
            }
        })
        .collect()
}

fn dockerd_pids(root: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir(root.join("proc"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| comm_of(root, *pid).as_deref() == Some("dockerd"))
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Probe everything cheap under `root` ("/" for the real system). The iptables
/// command checks are left `None`: `bringup::probe_system` runs those the plan needs.
pub fn probe_root(root: &Path, settings: &Settings, env: ProbeEnv) -> SystemProbe {
    let mut errors = Vec::new();
    let mut read = |p: &str| match std::fs::read_to_string(root.join(p)) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(format!("cannot read /{p}: {e}"));
            None
        }
    };
    let mountinfo_text = read("proc/self/mountinfo");
    let status_text = read("proc/self/status");
    let uid_map_text = read("proc/self/uid_map");
    let mounts = match mountinfo_text.as_deref().map(MountInfo::parse) {
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            errors.push(format!("cannot parse /proc/self/mountinfo: {e}"));
            MountInfo::default()
        }
        None => MountInfo::default(),
    };
    let status = status_text
        .as_deref()
        .map(caps::parse_status)
        .unwrap_or_default();
    let last_cap = std::fs::read_to_string(root.join("proc/sys/kernel/cap_last_cap"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(caps::last_known_cap);
    let caps = CapsProbe::from_sets(
        status.cap_eff.unwrap_or(0),
        status.cap_bnd.unwrap_or(0),
        last_cap,
    );
    let userns = caps::parse_uid_map(uid_map_text.as_deref().unwrap_or(""));
    let apparmor_profile = ["proc/self/attr/apparmor/current", "proc/self/attr/current"]
        .iter()
        .find_map(|p| std::fs::read_to_string(root.join(p)).ok())
        .map(|s| s.trim_end_matches(['\0', '\n']).to_string())
        .filter(|s| !s.is_empty());

    let docker_socket = socket::probe_socket(root, Path::new(DOCKER_SOCKET), &mounts);
    let docker_host_socket = settings
        .docker_host
        .as_ref()
        .and_then(|h| match &h.endpoint {
            Some(crate::config::docker_host::Endpoint::Unix(p)) => Some(p.as_path()),
            _ => None,
        })
        .filter(|p| p.is_absolute() && *p != Path::new(DOCKER_SOCKET))
        .map(|p| socket::probe_socket(root, p, &mounts));

    let resolv_conf = match resolv::probe_resolv_conf(root) {
        Ok(rc) => Some(rc),
        Err(e) => {
            errors.push(e);
            None
        }
    };

    let data = socket::resolve_in_root(root, Path::new(DOCKER_DATA_ROOT));
    let docker_storage = StorageProbe {
        fs_type: mounts.fs_type_of(&data).map(str::to_string),
        is_mount_point: mounts.is_mount_point(&data),
        path: PathBuf::from(DOCKER_DATA_ROOT),
    };
    let cdata = socket::resolve_in_root(root, Path::new(CONTAINERD_DATA_ROOT));
    let containerd_storage = StorageProbe {
        fs_type: mounts.fs_type_of(&cdata).map(str::to_string),
        is_mount_point: mounts.is_mount_point(&cdata),
        path: PathBuf::from(CONTAINERD_DATA_ROOT),
    };
    let config_file = settings
        .dockerd_args
        .values("config-file")
        .last()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(daemon_json::DAEMON_JSON));

    SystemProbe {
        root: root.to_path_buf(),
        dockerd_program: binaries::resolve(root, &env.path, "dockerd"),
        euid: status.uid.map(|u| u[1]),
        egid: status.gid.map(|g| g[1]),
        groups: status.groups.clone(),
        seccomp: status.seccomp,
        apparmor_profile,
        cgroups: cgroup::probe_cgroups(root, &mounts),
        caps,
        userns,
        sysboxfs_mounts: mounts.sysboxfs_mounts(),
        docker_socket,
        docker_host_socket,
        docker_host: settings.docker_host.as_ref().map(|h| h.value.clone()),
        net: net::probe_net(root),
        resolv_conf,
        docker_storage,
        containerd_storage,
        iptables: iptables::probe_iptables_files(root, &env.path),
        versions: versions::probe_versions(root, &env.path),
        daemon_json: daemon_json::probe_daemon_json(root, &config_file),
        securityfs_dir: root.join(rel(Path::new("/sys/kernel/security"))).is_dir(),
        securityfs_mounted: mounts.securityfs_mounted(),
        lib_modules: root.join("lib/modules").is_dir(),
        apparmor_kernel: std::fs::read_to_string(
            root.join("sys/module/apparmor/parameters/enabled"),
        )
        .is_ok_and(|t| t.starts_with('Y')),
        apparmor_parser: iptables::find_in_path(root, &env.path, "apparmor_parser").is_some(),
        dev_kmsg: root.join("dev/kmsg").exists(),
        pid_files: find_pid_files(root),
        dockerd_pids: dockerd_pids(root),
        pid1_comm: comm_of(root, 1),
        pid1_euid: std::fs::read_to_string(root.join("proc/1/status"))
            .ok()
            .and_then(|t| caps::parse_status(&t).uid.map(|u| u[1])),
        workspace_user: crate::user::db::PasswdFile::parse(
            &std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default(),
        )
        .workspace_user(settings.user.as_deref())
        .map(|e| e.name),
        hostname: net::hostname(root),
        interface_ips: net::interface_ips(),
        rootless: settings
            .docker_rootless
            .then(|| crate::rootless::probe::probe_rootless(root, settings, &env.path)),
        mounts,
        env,
        errors,
    }
}

/// Probe the real system without the iptables command checks; bring-up
/// runs those the plan asks for (see `bringup::probe_system`).
pub fn probe_real(settings: &Settings) -> SystemProbe {
    probe_root(Path::new("/"), settings, ProbeEnv::from_process())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_are_found_recursively_case_insensitively_and_once() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("run/docker/containerd")).unwrap();
        std::fs::create_dir_all(r.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", r.join("var/run")).unwrap();
        std::fs::write(r.join("run/docker.pid"), "4242\n").unwrap();
        std::fs::write(r.join("run/docker/containerd/Docker-containerd.PID"), "x").unwrap();
        std::fs::write(r.join("run/docker/containerd/containerd.pid"), "15").unwrap();
        std::fs::write(r.join("run/other.pid"), "1").unwrap();
        // pid 15 is alive, but as a `docker exec`, not containerd.
        std::fs::create_dir_all(r.join("proc/15")).unwrap();
        std::fs::write(r.join("proc/15/comm"), "ws-init\n").unwrap();
        let mut f = find_pid_files(r);
        f.sort_by(|a, b| a.path.cmp(&b.path));
        let paths: Vec<_> = f.iter().map(|p| p.path.clone()).collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("/run/docker/containerd/Docker-containerd.PID"),
                PathBuf::from("/run/docker/containerd/containerd.pid"),
                PathBuf::from("/run/docker.pid")
            ]
        );
        assert_eq!((f[0].pid, f[1].pid, f[2].pid), (None, Some(15), Some(4242)));
        assert_eq!(f[1].running.as_deref(), Some("ws-init"));
        assert!(
            f.iter().all(PidFile::is_stale),
            "no dockerd or containerd behind any of them"
        );
        // A live containerd keeps its file (dockerd reattaches to it).
        std::fs::write(r.join("proc/15/comm"), "containerd\n").unwrap();
        let live = find_pid_files(r);
        let c = live.iter().find(|p| p.pid == Some(15)).unwrap();
        assert!(!c.is_stale());
    }

    #[test]
    fn unreadable_inputs_are_reported_not_fatal() {
        let t = tempfile::tempdir().unwrap();
        let p = probe_root(t.path(), &Settings::default(), ProbeEnv::from_process());
        assert!(
            p.errors.iter().any(|e| e.contains("/proc/self/mountinfo")),
            "{:?}",
            p.errors
        );
        assert_eq!(p.cgroups.layout, CgroupLayout::None);
        assert_eq!(p.euid, None);
    }
}
