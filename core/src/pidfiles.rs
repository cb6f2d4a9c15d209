//! Stale pid files: after an unclean stop (`docker restart`, OOM kill, a
//! crash) dockerd finds its old pid file and refuses to start, and a stale
//! `containerd.pid` can name a reused pid that dockerd then waits on. The
//! supervisor clears them before every start; bring-up's probe lists them
//! with the same walk.

use std::path::{Path, PathBuf};

/// `docker*.pid` files (any case) and `containerd.pid` under `root`'s /run
/// and /var/run, like upstream's `find /run /var/run -iname 'docker*.pid'`
/// (depth-bounded; a /var/run symlink is not walked twice). Paths are
/// under `root`. Only directories whose entries nobody else can replace are
/// walked (see [`walkable`]): root removes what is found, and a user who
/// could swap a directory for a link could point that elsewhere. dockerd's
/// own pid files never live in one that is not (`/run/user/UID`).
pub fn candidates(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
        if !std::fs::symlink_metadata(dir).is_ok_and(|m| walkable(&m)) {
            return;
        }
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            // DirEntry's type does not follow links: a link is neither.
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name().to_string_lossy().to_ascii_lowercase();
            if ft.is_dir() && depth < 4 {
                walk(&e.path(), depth + 1, out);
            } else if ft.is_file()
                && ((name.starts_with("docker") && name.ends_with(".pid"))
                    || name == "containerd.pid")
            {
                out.push(e.path());
            }
        }
    }
    let mut found = Vec::new();
    let mut seen_dirs = Vec::new();
    for d in ["run", "var/run"] {
        let dir = root.join(d);
        // /var/run is usually a symlink to /run: its files are already listed.
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        if let Ok(c) = dir.canonicalize() {
            if seen_dirs.contains(&c) {
                continue;
            }
            seen_dirs.push(c);
        }
        walk(&dir, 0, &mut found);
    }
    found
}

/// A real directory (not a link) owned by root or by ourselves whose
/// entries nobody else can replace: only its owner may write it, or it is
/// sticky (a tmpfs /run is 1777: others may add entries there, never rename
/// or remove ours; theirs are skipped, being theirs).
pub fn walkable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let mode = meta.mode();
    meta.file_type().is_dir()
        && (meta.uid() == 0 || meta.uid() == me)
        && (mode & 0o022 == 0 || mode & libc::S_ISVTX != 0)
}

/// The pid a pid file names, if it holds one.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The command name of live process `pid` under `root`'s /proc.
pub fn comm_of(root: &Path, pid: i32) -> Option<String> {
    std::fs::read_to_string(root.join(format!("proc/{pid}/comm")))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Left over from an earlier run: no dockerd/containerd lives under that
/// pid now (a live unrelated process with a reused pid still makes it stale).
pub fn is_stale(running: Option<&str>) -> bool {
    !running.is_some_and(|c| c.starts_with("dockerd") || c.starts_with("containerd"))
}

/// Removes the stale ones among [`candidates`] under `/`; returns what was
/// removed, and the first failure with its path.
pub fn remove_stale() -> (Vec<PathBuf>, Option<(PathBuf, std::io::Error)>) {
    let root = Path::new("/");
    let mut removed = Vec::new();
    for path in candidates(root) {
        let running = read_pid(&path).and_then(|pid| comm_of(root, pid));
        if !is_stale(running.as_deref()) {
            continue;
        }
        // unlink never follows the last component; the directories above
        // are root's (/run, /var/run/docker).
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return (removed, Some((path, e))),
        }
    }
    (removed, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_containerd_pid_files_are_found_and_judged() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("run/docker/containerd")).unwrap();
        std::fs::create_dir_all(r.join("var")).unwrap();
        std::os::unix::fs::symlink("../run", r.join("var/run")).unwrap();
        for f in [
            "run/docker.pid",
            "run/DOCKER-x.PID",
            "run/docker/containerd/containerd.pid",
            "run/other.pid",
        ] {
            std::fs::write(r.join(f), "1").unwrap();
        }
        // A directory others may write is not walked: its pid file is
        // not dockerd's, and root does not remove files there. A sticky one
        // (a tmpfs /run, /run/lock) is: nobody can replace our entries.
        use std::os::unix::fs::PermissionsExt;
        for (dir, mode) in [("run/user/1000", 0o777), ("run/lock", 0o1777)] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
            std::fs::write(r.join(dir).join("docker.pid"), "1").unwrap();
            std::fs::set_permissions(r.join(dir), PermissionsExt::from_mode(mode)).unwrap();
        }
        let mut found: Vec<_> = candidates(r)
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().to_path_buf())
            .collect();
        found.sort();
        let want: Vec<PathBuf> = [
            "run/DOCKER-x.PID",
            "run/docker/containerd/containerd.pid",
            "run/docker.pid",
            "run/lock/docker.pid",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(found, want);
        assert!(is_stale(None));
        assert!(is_stale(Some("bash")));
        assert!(!is_stale(Some("dockerd")));
        assert!(!is_stale(Some("containerd")));
        assert_eq!(read_pid(&r.join("run/docker.pid")), Some(1));
    }
}
