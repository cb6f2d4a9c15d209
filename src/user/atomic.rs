//! Crash-safe file replacement: write a temporary file in the same directory,
//! fsync it, rename it over the target, fsync the directory. A reader sees the
//! old or the new contents, never a mix, and a crash never leaves a truncated
//! `/etc/group` or half a certificate.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode and owner for the new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Same mode and owner as the file being replaced (0644 root:root if new).
    KeepExisting,
    /// This mode; owner is whoever writes (root here).
    Mode(u32),
}

fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".ws-init-tmp.{}", std::process::id()));
    Ok(path.with_file_name(tmp))
}

/// Replace `path` with `contents` atomically (see module docs).
pub fn write_atomically_with(path: &Path, contents: &[u8], ownership: Ownership) -> io::Result<()> {
    let existing = std::fs::metadata(path).ok();
    let (mode, owner) = match (ownership, &existing) {
        (Ownership::Mode(m), _) => (m, None),
        (Ownership::KeepExisting, Some(meta)) => {
            (meta.mode() & 0o7777, Some((meta.uid(), meta.gid())))
        }
        (Ownership::KeepExisting, None) => (0o644, None),
    };
    let tmp = temp_path(path)?;
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        // After fchown: chown clears set-id bits, and the umask must not apply.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Replace `path` keeping its mode and owner (0644 when it did not exist).
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomically_with(path, contents, Ownership::KeepExisting)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_mode_and_owner_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("group");
        std::fs::write(&p, "old\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        // A distinct owner when we can set one (root), to see it is kept.
        let is_root = nix::unistd::geteuid().is_root();
        if is_root {
            std::os::unix::fs::chown(&p, Some(1234), Some(42)).unwrap();
        }
        write_atomically(&p, b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new\n");
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        if is_root {
            assert_eq!((meta.uid(), meta.gid()), (1234, 42));
        }
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "temp file left behind");
    }

    #[test]
    fn new_file_gets_requested_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("key.pem");
        write_atomically_with(&p, b"k", Ownership::Mode(0o600)).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o600);
        write_atomically(&tmp.path().join("plain"), b"x").unwrap();
        let m = std::fs::metadata(tmp.path().join("plain")).unwrap().mode() & 0o7777;
        assert_eq!(m, 0o644);
    }

    #[test]
    fn failure_keeps_the_original() {
        let tmp = tempfile::tempdir().unwrap();
        // Target is a non-empty directory: rename fails, nothing is lost.
        let p = tmp.path().join("dir");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), "keep").unwrap();
        assert!(write_atomically(&p, b"x").is_err());
        assert_eq!(std::fs::read_to_string(p.join("inside")).unwrap(), "keep");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
