//! Mount steps of `hack/dind` plus our cgroup v1 remount (design §2, §7).

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

use super::PrepareError;
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
pub fn mount_securityfs(dir: &Path, mountinfo: &Path) -> Result<SecurityfsOutcome, PrepareError> {
    if !dir.is_dir() {
        return Ok(SecurityfsOutcome::NoDirectory);
    }
    let text = std::fs::read_to_string(mountinfo).map_err(|source| PrepareError::MountInfo {
        path: mountinfo.to_owned(),
        source,
    })?;
    // An unparsable table counts as "not mounted": mounting again is harmless.
    if MountInfo::parse(&text).is_ok_and(|m| m.is_mount_point(dir)) {
        return Ok(SecurityfsOutcome::AlreadyMounted);
    }
    mount(
        Some("securityfs"),
        dir,
        Some("securityfs"),
        MsFlags::empty(),
        None::<&str>,
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
pub fn remount_rw(path: &Path) -> Result<bool, PrepareError> {
    let err = |source| PrepareError::RemountRw {
        path: path.to_owned(),
        source,
    };
    let flags = statvfs(path).map_err(err)?.flags();
    if !flags.contains(FsFlags::ST_RDONLY) {
        return Ok(false);
    }
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | kept_flags(flags),
        None::<&str>,
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
pub fn remount_cgroup_v1_rw(mount_points: &[PathBuf]) -> RemountReport {
    let mut report = RemountReport::default();
    for path in mount_points {
        match remount_rw(path) {
            Ok(true) => report.remounted.push(path.clone()),
            Ok(false) => report.already_rw.push(path.clone()),
            Err(e) => report.failed.push(e),
        }
    }
    report
}

/// `mount --make-rshared PATH`.
pub fn make_rshared(path: &Path) -> Result<(), PrepareError> {
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(|source| PrepareError::MakeShared {
        path: path.to_owned(),
        source,
    })
}

/// `mount --make-rshared /` (hack/dind step 5): inner containers need shared
/// propagation for volumes with `rshared`/`rslave` and for dockerd's own mounts.
pub fn make_root_rshared() -> Result<(), PrepareError> {
    make_rshared(Path::new("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            &tmp.path().join("absent"),
            Path::new("/proc/self/mountinfo"),
        );
        assert_eq!(out.unwrap(), SecurityfsOutcome::NoDirectory);
    }
}
