//! Mount steps of `hack/dind` plus our cgroup v1 remount (design §2, §7).

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::statvfs::FsFlags;

use super::{PrepareError, Syscalls};
use crate::probe::MountInfo;

/// What `mount_securityfs` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityfsOutcome {
    /// The directory does not exist (kernel without securityfs in sysfs): nothing to do.
    NoDirectory,
    AlreadyMounted,
    Mounted,
}

/// Mount securityfs on `dir` (normally `/sys/kernel/security`) when the
/// directory exists and is not already a mountpoint, as `hack/dind` does.
/// `mountinfo` is the mount table to consult (`/proc/self/mountinfo`).
/// Upstream treats a failure as a warning: the caller decides.
pub fn mount_securityfs(
    sys: &dyn Syscalls,
    dir: &Path,
    mountinfo: &Path,
) -> Result<SecurityfsOutcome, PrepareError> {
    if !sys.is_dir(dir) {
        return Ok(SecurityfsOutcome::NoDirectory);
    }
    let text = sys
        .read_to_string(mountinfo)
        .map_err(|source| PrepareError::MountInfo {
            path: mountinfo.to_owned(),
            source,
        })?;
    // An unparsable table counts as "not mounted": mounting again is harmless.
    if MountInfo::parse(&text).is_ok_and(|m| m.is_mount_point(dir)) {
        return Ok(SecurityfsOutcome::AlreadyMounted);
    }
    sys.mount(
        Some("securityfs"),
        dir,
        Some("securityfs"),
        MsFlags::empty(),
    )
    .map_err(|source| PrepareError::Securityfs {
        dir: dir.to_owned(),
        source,
    })?;
    Ok(SecurityfsOutcome::Mounted)
}

/// `ST_RELATIME` (0x1000 in the Linux ABI); nix defines it for glibc only,
/// so spell it out to build for musl too.
fn st_relatime() -> FsFlags {
    FsFlags::from_bits_retain(0x1000)
}

/// Per-mount flags that a bind remount must repeat: the kernel refuses (EPERM)
/// to clear locked ones inside a user namespace, and silently dropping them
/// elsewhere would loosen the mount.
fn kept_flags(flags: FsFlags) -> MsFlags {
    let table = [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (st_relatime(), MsFlags::MS_RELATIME),
    ];
    table
        .iter()
        .filter(|(st, _)| flags.contains(*st))
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms)
}

/// `mount -o remount,bind,rw PATH`, keeping nosuid/nodev/noexec/atime flags.
/// Returns `Ok(false)` when the mount was already read-write.
pub fn remount_rw(sys: &dyn Syscalls, path: &Path) -> Result<bool, PrepareError> {
    let err = |source| PrepareError::RemountRw {
        path: path.to_owned(),
        source,
    };
    let flags = sys.mount_flags(path).map_err(err)?;
    if !flags.contains(FsFlags::ST_RDONLY) {
        return Ok(false);
    }
    sys.mount(
        None,
        path,
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | kept_flags(flags),
    )
    .map_err(err)?;
    Ok(true)
}

/// Result of remounting several cgroup v1 hierarchies; one failure does not
/// stop the others.
#[derive(Debug, Default)]
pub struct RemountReport {
    pub remounted: Vec<PathBuf>,
    pub already_rw: Vec<PathBuf>,
    pub failed: Vec<PrepareError>,
}

/// Make each read-only cgroup v1 hierarchy read-write (Docker mounts them
/// `ro` in non-`--privileged` containers; inner `--memory` limits then fail).
pub fn remount_cgroup_v1_rw(sys: &dyn Syscalls, mount_points: &[PathBuf]) -> RemountReport {
    let mut report = RemountReport::default();
    for path in mount_points {
        match remount_rw(sys, path) {
            Ok(true) => report.remounted.push(path.clone()),
            Ok(false) => report.already_rw.push(path.clone()),
            Err(e) => report.failed.push(e),
        }
    }
    report
}

/// `mount --make-rshared PATH`.
pub fn make_rshared(sys: &dyn Syscalls, path: &Path) -> Result<(), PrepareError> {
    sys.mount(None, path, None, MsFlags::MS_REC | MsFlags::MS_SHARED)
        .map_err(|source| PrepareError::MakeShared {
            path: path.to_owned(),
            source,
        })
}

/// `mount --make-rshared /` (hack/dind step 5): inner containers need shared
/// propagation for volumes with `rshared`/`rslave` and for dockerd's own mounts.
pub fn make_root_rshared(sys: &dyn Syscalls) -> Result<(), PrepareError> {
    make_rshared(sys, Path::new("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::syscall::recording::{Call, Recording};
    use crate::prepare::RealSyscalls;

    fn mount_call(target: &str, flags: MsFlags) -> Call {
        Call::Mount {
            source: None,
            target: target.into(),
            fstype: None,
            flags,
        }
    }

    #[test]
    fn only_read_only_hierarchies_are_remounted_and_one_failure_stops_none() {
        let sys = Recording::default()
            .mounted(
                "/cg/memory",
                FsFlags::ST_RDONLY | FsFlags::ST_NOSUID | FsFlags::ST_NODEV,
            )
            .mounted("/cg/cpu", FsFlags::ST_NOSUID)
            .mounted("/cg/pids", FsFlags::ST_RDONLY)
            .mounted("/cg/blkio", FsFlags::ST_RDONLY | FsFlags::ST_NOEXEC)
            .fail("/cg/pids", None, libc::EPERM, u32::MAX);
        let paths =
            ["/cg/memory", "/cg/cpu", "/cg/pids", "/cg/gone", "/cg/blkio"].map(PathBuf::from);
        let report = remount_cgroup_v1_rw(&sys, &paths);
        assert_eq!(
            report.remounted,
            ["/cg/memory", "/cg/blkio"].map(PathBuf::from)
        );
        assert_eq!(report.already_rw, [PathBuf::from("/cg/cpu")]);
        let failed: Vec<String> = report.failed.iter().map(|e| e.to_string()).collect();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed[0].contains("/cg/pids") && failed[0].contains("EPERM"));
        assert!(failed[1].contains("/cg/gone"), "statvfs failure reported");
        let remount = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
        assert_eq!(
            sys.calls(),
            [
                mount_call(
                    "/cg/memory",
                    remount | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
                ),
                mount_call("/cg/pids", remount),
                mount_call("/cg/blkio", remount | MsFlags::MS_NOEXEC),
            ]
        );
    }

    #[test]
    fn securityfs_is_mounted_only_where_nothing_is() {
        let line = "40 20 0:7 / /sys/kernel/security rw - securityfs securityfs rw\n";
        let mounted = Recording::default()
            .dir("/sys/kernel/security")
            .file("/mi", &[line]);
        let dir = Path::new("/sys/kernel/security");
        assert_eq!(
            mount_securityfs(&mounted, dir, Path::new("/mi")).unwrap(),
            SecurityfsOutcome::AlreadyMounted
        );
        assert!(mounted.calls().is_empty());

        let bare = Recording::default()
            .dir("/sys/kernel/security")
            .file("/mi", &["not a mount table\n"]);
        assert_eq!(
            mount_securityfs(&bare, dir, Path::new("/mi")).unwrap(),
            SecurityfsOutcome::Mounted
        );
        assert_eq!(
            bare.calls(),
            [Call::Mount {
                source: Some("securityfs".into()),
                target: dir.into(),
                fstype: Some("securityfs".into()),
                flags: MsFlags::empty(),
            }]
        );

        let no_table = Recording::default().dir("/sys/kernel/security");
        let err = mount_securityfs(&no_table, dir, Path::new("/mi")).unwrap_err();
        assert!(err.to_string().contains("is /proc mounted"), "{err}");
    }

    #[test]
    fn root_is_made_rshared_recursively() {
        let sys = Recording::default();
        make_root_rshared(&sys).unwrap();
        assert_eq!(
            sys.calls(),
            [mount_call("/", MsFlags::MS_REC | MsFlags::MS_SHARED)]
        );
        let denied = Recording::default().fail("/", None, libc::EPERM, 1);
        let err = make_root_rshared(&denied).unwrap_err().to_string();
        assert!(
            err.contains("recursive shared") && err.contains("--privileged"),
            "{err}"
        );
    }

    #[test]
    fn kept_flags_maps_and_drops_rdonly() {
        let f = FsFlags::ST_RDONLY | FsFlags::ST_NOSUID | FsFlags::ST_NOEXEC | st_relatime();
        let ms = kept_flags(f);
        assert_eq!(
            ms,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME
        );
        assert!(!ms.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn securityfs_missing_dir_is_nothing_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let out = mount_securityfs(
            &RealSyscalls,
            &tmp.path().join("absent"),
            Path::new("/proc/self/mountinfo"),
        );
        assert_eq!(out.unwrap(), SecurityfsOutcome::NoDirectory);
    }
}
