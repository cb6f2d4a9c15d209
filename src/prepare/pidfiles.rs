//! Stale pid files: after an unclean stop (`docker restart`, OOM kill) dockerd
//! finds its old pid file and refuses to start.
//!
//! Which files are stale is the probe's and the plan's business (upstream's
//! `find /run /var/run -iname 'docker*.pid'` plus dockerd's `containerd.pid`,
//! minus files of a live dockerd/containerd); this only deletes the files it is given.

use std::path::PathBuf;

use super::{PrepareError, Syscalls};

/// Delete `files`; one already gone is fine. Returns the files removed.
pub fn remove_pid_files(
    sys: &dyn Syscalls,
    files: &[PathBuf],
) -> Result<Vec<PathBuf>, PrepareError> {
    let mut removed = Vec::new();
    for path in files {
        match sys.remove_file(path) {
            Ok(()) => removed.push(path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PrepareError::PidFile {
                    path: path.clone(),
                    source,
                })
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::RealSyscalls;

    #[test]
    fn removes_exactly_the_listed_files_and_tolerates_missing_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let stale = tmp.path().join("docker.pid");
        let other = tmp.path().join("containerd.pid");
        std::fs::write(&stale, "1").unwrap();
        std::fs::write(&other, "1").unwrap();
        let gone = tmp.path().join("docker-gone.pid");
        let removed = remove_pid_files(&RealSyscalls, &[stale.clone(), gone]).unwrap();
        assert_eq!(removed, vec![stale.clone()]);
        assert!(!stale.exists());
        assert!(other.exists());
        let dir = tmp.path().join("docker-dir.pid");
        std::fs::create_dir(&dir).unwrap();
        assert!(matches!(
            remove_pid_files(&RealSyscalls, &[dir]),
            Err(PrepareError::PidFile { .. })
        ));
    }
}
