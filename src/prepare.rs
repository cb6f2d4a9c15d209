//! Apply the Docker-in-Docker preparation steps (design §2).
//!
//! `plan` decides WHICH steps run; this module only carries them out. Every
//! function takes the paths it works on as parameters (the caller passes the
//! real `/sys/...`, `/run`, ...) and makes its system calls through
//! [`Syscalls`]: the decisions around them are unit-tested with a recording
//! implementation, the calls themselves by the integration tests in
//! `tests/prepare_real.rs` on temporary directories and in private mount
//! namespaces.

pub mod cgroup;
pub mod iptables;
pub mod mounts;
pub mod pidfiles;
pub mod syscall;

use std::path::PathBuf;

pub use cgroup::{cgroup_v2_evacuate, retry_while_busy, EvacuateReport};
pub use iptables::{
    iptables_legacy_links, iptables_version, set_iptables_alternatives,
    DEFAULT_IPTABLES_LEGACY_DIR, LEGACY_LINKS,
};
pub use mounts::{
    make_root_rshared, make_rshared, mount_securityfs, remount_cgroup_v1_rw, remount_rw,
    RemountReport, SecurityfsOutcome,
};
pub use pidfiles::remove_pid_files;
pub use syscall::{RealSyscalls, Syscalls};

/// Why a preparation step failed; each message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(
        "cannot mount securityfs on {dir}: {source}; run the container with --privileged \
         (or CAP_SYS_ADMIN and no AppArmor confinement); AppArmor-aware tools inside will \
         see no securityfs otherwise"
    )]
    Securityfs { dir: PathBuf, source: nix::Error },
    #[error("cannot read mount table {path}: {source}; is /proc mounted in this container?")]
    MountInfo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot remount cgroup hierarchy {path} read-write: {source}; run the container with \
         --privileged (or CAP_SYS_ADMIN, --security-opt apparmor=unconfined and \
         systempaths=unconfined) so inner containers can set resource limits"
    )]
    RemountRw { path: PathBuf, source: nix::Error },
    #[error(
        "cannot make {path} a recursive shared mount: {source}; run the container with \
         --privileged (or CAP_SYS_ADMIN); without it inner bind mounts with propagation fail"
    )]
    MakeShared { path: PathBuf, source: nix::Error },
    #[error(
        "cgroup v2: cannot {action} {path}: {source}; run the container with --privileged \
         (or --cgroupns=private and a writable /sys/fs/cgroup)"
    )]
    Cgroup {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cgroup v2: enabling controllers \"{controllers}\" in {path} still failed with EBUSY \
         after {attempts} attempts ({elapsed_ms} ms): processes keep arriving in the root \
         cgroup (a `docker exec` during start?); retry, or start exec sessions later"
    )]
    CgroupBusy {
        path: PathBuf,
        controllers: String,
        attempts: u32,
        elapsed_ms: u128,
    },
    #[error("cannot delete stale pid file {path}: {source}; remove it by hand and restart")]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "legacy iptables not usable: {binary}: {why}; install the `iptables` package \
         (Debian/Ubuntu: apt-get install iptables) with its programs owned by root and not \
         writable by others, or unset DOCKER_IPTABLES_LEGACY to use nft"
    )]
    IptablesLegacyUnusable { binary: String, why: String },
    #[error("cannot create {path}: {source}; is /run writable?")]
    IptablesLinks {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run `{binary} --version`: {detail}; check the `iptables` package")]
    IptablesVersion { binary: PathBuf, detail: String },
    #[error("`update-alternatives --set {name} {}` failed: {detail}; the workspace's `iptables` command may show other rules than dockerd's (run that command as root to fix it)", path.display())]
    IptablesAlternative {
        name: String,
        path: PathBuf,
        detail: String,
    },
}
