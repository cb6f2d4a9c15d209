//! The programs ws-init runs as root (dockerd, iptables) come from a fixed
//! search path, never from the caller's `PATH`, and only from places no
//! other user can write: every directory from `/` down to the file (after
//! each link), and the file itself, owned by root and not writable by group
//! or others. They are resolved once at start, logged, and the same absolute
//! path is used at every restart.

use std::path::{Component, Path, PathBuf};

/// Where programs run as root are looked for, in order.
pub const SEARCH_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Links followed at most (as the kernel's own limit).
const MAX_LINKS: usize = 40;

/// `p` (absolute, inside `root`) as a path on this system.
fn host(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// Root-owned and not writable by group or others (`what` names it in the error).
fn root_only(meta: &std::fs::Metadata, what: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != 0 {
        return Err(format!(
            "{} is owned by uid {}, not root",
            what.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o})",
            what.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// `dir` (absolute, inside `root`) with every directory on its way, after
/// links, root-only. Returns its canonical form inside `root`.
fn check_dir(root: &Path, dir: &Path) -> Result<PathBuf, String> {
    let canon_root = std::fs::canonicalize(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let canon =
        std::fs::canonicalize(host(root, dir)).map_err(|e| format!("{}: {e}", dir.display()))?;
    let inside = canon
        .strip_prefix(&canon_root)
        .map_err(|_| format!("{} leads out of {}", dir.display(), root.display()))?;
    for anc in canon.ancestors().take_while(|a| a.starts_with(&canon_root)) {
        let meta = std::fs::metadata(anc).map_err(|e| format!("{}: {e}", anc.display()))?;
        root_only(&meta, anc)?;
    }
    Ok(Path::new("/").join(inside))
}

/// Checks the program at `p` (absolute, inside `root`): each link on the way
/// and the final file lie in root-only directories; the file is a root-only
/// executable regular file.
pub fn check_program(root: &Path, p: &Path) -> Result<(), String> {
    let mut cur = p.to_path_buf();
    for _ in 0..MAX_LINKS {
        let parent = cur.parent().unwrap_or(Path::new("/"));
        let parent = check_dir(root, parent)?;
        let name = cur
            .file_name()
            .ok_or_else(|| format!("{} names no file", cur.display()))?;
        cur = parent.join(name);
        let meta = std::fs::symlink_metadata(host(root, &cur))
            .map_err(|e| format!("{}: {e}", cur.display()))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(host(root, &cur))
                .map_err(|e| format!("{}: {e}", cur.display()))?;
            cur = normalize(&parent.join(target));
            continue;
        }
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", cur.display()));
        }
        root_only(&meta, &cur)?;
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 == 0 {
            return Err(format!("{} is not executable", cur.display()));
        }
        return Ok(());
    }
    Err(format!("{}: too many levels of links", p.display()))
}

/// `..` and `.` resolved lexically (the parent is already canonical).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The directories of `search` (a PATH-style list) that exist inside `root`
/// and are root-only, joined with `:`.
pub fn trusted_dirs(root: &Path, search: &str) -> String {
    search
        .split(':')
        .filter(|d| d.starts_with('/'))
        .filter(|d| check_dir(root, Path::new(d)).is_ok())
        .collect::<Vec<_>>()
        .join(":")
}

/// The first `name` in `search` that passes [`check_program`], as
/// `dir/name` (not the link's target: multi-call binaries such as
/// `xtables-nft-multi` go by the name they are called with). The error says
/// what was searched and why candidates were passed over.
pub fn resolve(root: &Path, search: &str, name: &str) -> Result<PathBuf, String> {
    let mut passed_over = Vec::new();
    for dir in search.split(':').filter(|d| d.starts_with('/')) {
        let candidate = Path::new(dir).join(name);
        if std::fs::symlink_metadata(host(root, &candidate)).is_err() {
            continue;
        }
        match check_program(root, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(why) => passed_over.push(why),
        }
    }
    let mut msg = format!("{name} not found in {search}");
    if !passed_over.is_empty() {
        msg.push_str(&format!(" (not used: {})", passed_over.join("; ")));
    }
    Err(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn exe(path: &Path, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn finds_the_first_trusted_program_and_keeps_its_name() {
        if !nix::unistd::geteuid().is_root() {
            return eprintln!("skipped: ownership checks need root-owned files");
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        exe(&root.join("usr/sbin/xtables-multi"), 0o755);
        std::fs::create_dir_all(root.join("usr/local/sbin")).unwrap();
        std::os::unix::fs::symlink(
            "../../sbin/xtables-multi",
            root.join("usr/local/sbin/iptables"),
        )
        .unwrap();
        std::os::unix::fs::symlink("usr/sbin", root.join("sbin")).unwrap();
        assert_eq!(
            resolve(root, SEARCH_PATH, "iptables").unwrap(),
            Path::new("/usr/local/sbin/iptables")
        );
        assert_eq!(
            resolve(root, "/sbin", "xtables-multi").unwrap(),
            Path::new("/sbin/xtables-multi")
        );
        let e = resolve(root, SEARCH_PATH, "dockerd").unwrap_err();
        assert!(e.contains("dockerd not found in /usr/local/sbin:"), "{e}");
    }

    #[test]
    fn writable_places_are_passed_over_with_the_reason() {
        if !nix::unistd::geteuid().is_root() {
            return eprintln!("skipped: ownership checks need root-owned files");
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // A world-writable directory, a file owned by a user, a group-writable file.
        exe(&root.join("usr/local/bin/dockerd"), 0o755);
        std::fs::set_permissions(
            root.join("usr/local/bin"),
            PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        exe(&root.join("usr/sbin/dockerd"), 0o755);
        std::os::unix::fs::chown(root.join("usr/sbin/dockerd"), Some(1000), None).unwrap();
        exe(&root.join("usr/bin/dockerd"), 0o775);
        exe(&root.join("bin/dockerd"), 0o755);
        assert_eq!(
            resolve(root, SEARCH_PATH, "dockerd").unwrap(),
            Path::new("/bin/dockerd")
        );
        std::fs::remove_file(root.join("bin/dockerd")).unwrap();
        let e = resolve(root, SEARCH_PATH, "dockerd").unwrap_err();
        assert!(
            e.contains("/usr/local/bin is writable by group or others"),
            "{e}"
        );
        assert!(e.contains("/usr/sbin/dockerd is owned by uid 1000"), "{e}");
        assert!(
            e.contains("/usr/bin/dockerd is writable by group or others"),
            "{e}"
        );
        // A link out of a trusted directory into a writable one.
        std::fs::create_dir_all(root.join("home/u")).unwrap();
        std::os::unix::fs::chown(root.join("home/u"), Some(1000), None).unwrap();
        exe(&root.join("home/u/evil"), 0o755);
        std::os::unix::fs::symlink("/home/u/evil", root.join("bin/dockerd")).unwrap();
        let e = resolve(root, "/bin", "dockerd").unwrap_err();
        assert!(e.contains("/home/u is owned by uid 1000"), "{e}");
        assert_eq!(trusted_dirs(root, SEARCH_PATH), "/usr/sbin:/usr/bin:/bin");
    }
}
