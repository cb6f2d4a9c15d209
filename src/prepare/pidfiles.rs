//! Stale pid files: after an unclean stop (`docker restart`, OOM kill) dockerd
//! finds its old pid file and refuses to start.
//!
//! Matches upstream `find /run /var/run -iname 'docker*.pid' -delete`:
//! recursive, case-insensitive, symlinks not followed (`/var/run` is usually a
//! link to `/run`; we canonicalise and visit each real directory once).
//! `containerd.pid` (under /run/docker/containerd) does not match and is left,
//! as upstream leaves it: dockerd's containerd supervisor checks whether the
//! PID in it is alive and starts a fresh containerd when it is not.

use std::path::{Path, PathBuf};

use super::PrepareError;

fn is_docker_pid_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("docker") && lower.ends_with(".pid")
}

fn walk(dir: &Path, removed: &mut Vec<PathBuf>) -> Result<(), PrepareError> {
    // An unreadable or vanished directory is skipped, as find would (with a warning).
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        let path = entry.path();
        if ft.is_dir() {
            walk(&path, removed)?;
        } else if entry.file_name().to_str().is_some_and(is_docker_pid_name) {
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(PrepareError::PidFile { path, source }),
            }
        }
    }
    Ok(())
}

/// Delete `docker*.pid` files (any case) under each of `dirs`, recursively.
/// Missing directories are fine. Returns the files removed.
pub fn remove_stale_pid_files(dirs: &[&Path]) -> Result<Vec<PathBuf>, PrepareError> {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut removed = Vec::new();
    for dir in dirs {
        let Ok(real) = std::fs::canonicalize(dir) else {
            continue;
        };
        if seen.iter().any(|s| real.starts_with(s)) {
            continue;
        }
        seen.push(real.clone());
        walk(&real, &mut removed)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_match_is_upstream_iname() {
        for yes in ["docker.pid", "DOCKER.PID", "docker-foo.pid", "dockerd.pid"] {
            assert!(is_docker_pid_name(yes), "{yes}");
        }
        for no in [
            "containerd.pid",
            "docker.pid.bak",
            "mydocker.pid",
            "docker.sock",
        ] {
            assert!(!is_docker_pid_name(no), "{no}");
        }
    }

    #[test]
    fn removes_recursively_once_through_symlinked_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        std::fs::create_dir_all(run.join("docker/containerd")).unwrap();
        std::fs::write(run.join("docker.pid"), "1").unwrap();
        std::fs::write(run.join("docker/Docker-x.PID"), "1").unwrap();
        std::fs::write(run.join("docker/containerd/containerd.pid"), "1").unwrap();
        std::fs::write(run.join("docker.sock"), "").unwrap();
        let var_run = tmp.path().join("var-run");
        std::os::unix::fs::symlink(&run, &var_run).unwrap();

        let mut removed =
            remove_stale_pid_files(&[&run, &var_run, &tmp.path().join("absent")]).unwrap();
        removed.sort();
        let run = std::fs::canonicalize(&run).unwrap();
        let mut want = vec![run.join("docker.pid"), run.join("docker/Docker-x.PID")];
        want.sort();
        assert_eq!(removed, want);
        assert!(run.join("docker/containerd/containerd.pid").exists());
        assert!(run.join("docker.sock").exists());
        assert!(remove_stale_pid_files(&[&run]).unwrap().is_empty());
    }
}
