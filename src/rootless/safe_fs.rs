//! File operations for root in paths a user may write (their home, their
//! runtime directory, the data root): every component is opened relative to
//! its parent with `O_NOFOLLOW`, so a link planted by the user is refused,
//! never followed; files are replaced through `user::atomic` (a fresh
//! temporary name, `O_EXCL`, `renameat`), so a planted hard link is replaced,
//! not written.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmod, mkdirat, Mode};
use nix::unistd::{fchown, Gid, Uid};

use crate::user::atomic::{Dir, Ownership};

/// The largest file `read_file_at` reads (docker's config.json is a few KiB).
pub const MAX_READ: u64 = 1 << 20;

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn name_of(name: &str) -> io::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single path component"),
        ));
    }
    Ok(name)
}

fn with_context<T>(r: nix::Result<T>, what: impl FnOnce() -> String) -> io::Result<T> {
    r.map_err(|e| {
        let hint = if e == nix::errno::Errno::ELOOP || e == nix::errno::Errno::ENOTDIR {
            " (a link or non-directory is in the way; it is not followed)"
        } else {
            ""
        };
        io::Error::new(io::Error::from(e).kind(), format!("{}: {e}{hint}", what()))
    })
}

/// Opens the absolute directory `path` without following any link on the way.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let mut fd = owned(with_context(
        openat(None, "/", dir_flags(), Mode::empty()),
        || "open /".into(),
    )?);
    let mut so_far = std::path::PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => {
                so_far.push(n);
                let next = with_context(
                    openat(Some(fd.as_raw_fd()), n, dir_flags(), Mode::empty()),
                    || format!("open {}", so_far.display()),
                )?;
                fd = owned(next);
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain absolute path", path.display()),
                ))
            }
        }
    }
    Ok(fd)
}

/// Owner and mode of an open file.
pub fn stat_fd(fd: &OwnedFd) -> io::Result<std::fs::Metadata> {
    let f = File::from(fd.try_clone()?);
    f.metadata()
}

/// `name` in `parent` as a directory (created with `mode` if missing), never
/// a link. With `owner`, a directory owned by someone else is given to them
/// (through the open descriptor). Returns the directory and whether it was created.
pub fn ensure_dir_at(
    parent: &OwnedFd,
    name: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<(OwnedFd, bool)> {
    let name = name_of(name)?;
    let created = match mkdirat(
        Some(parent.as_raw_fd()),
        name,
        Mode::from_bits_truncate(mode),
    ) {
        Ok(()) => true,
        Err(nix::errno::Errno::EEXIST) => false,
        Err(e) => return with_context(Err(e), || format!("mkdir {name}")),
    };
    let fd = owned(with_context(
        openat(Some(parent.as_raw_fd()), name, dir_flags(), Mode::empty()),
        || format!("open {name}"),
    )?);
    if let Some((uid, gid)) = owner {
        let meta = stat_fd(&fd)?;
        if (meta.uid(), meta.gid()) != (uid, gid) {
            with_context(
                fchown(
                    fd.as_raw_fd(),
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                ),
                || format!("chown {name}"),
            )?;
        }
    }
    if created {
        // mkdir applied the umask.
        with_context(
            fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode)),
            || format!("chmod {name}"),
        )?;
    }
    Ok((fd, created))
}

/// Reads the regular file `name` in `dir` if it exists, refusing links,
/// non-regular files (a FIFO would block), files not owned by `owner` (a
/// hard link to a secret would otherwise be read as root) and big ones.
pub fn read_file_at(dir: &OwnedFd, name: &str, owner: u32) -> io::Result<Option<Vec<u8>>> {
    let name = name_of(name)?;
    let fd = match openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => owned(fd),
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return with_context(Err(e), || format!("open {name}")),
    };
    let mut f = File::from(fd);
    let meta = f.metadata()?;
    if !meta.is_file() || meta.uid() != owner || meta.len() > MAX_READ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{name} is not a regular file of uid {owner} up to {MAX_READ} bytes; left alone"
            ),
        ));
    }
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(Some(out))
}

/// Replaces `name` in `dir` with `contents` (mode, owner) atomically, as the
/// `/etc/group` edits do (`user::atomic`): a fresh temporary name (`O_EXCL`),
/// fsync, `renameat`, fsync of the directory.
pub fn write_file_at(
    dir: &OwnedFd,
    name: &str,
    contents: &[u8],
    mode: u32,
    owner: (u32, u32),
) -> io::Result<()> {
    let name = name_of(name)?;
    let (uid, gid) = owner;
    Dir::from_fd(dir.try_clone()?, PathBuf::new())
        .write_atomically(name.as_ref(), contents, Ownership::Exact { mode, uid, gid })
        .map_err(|e| io::Error::new(e.kind(), format!("write {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn open_dir_refuses_a_link_anywhere_on_the_way() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("real/sub")).unwrap();
        std::os::unix::fs::symlink(r.join("real"), r.join("link")).unwrap();
        assert!(open_dir(&r.join("real/sub")).is_ok());
        let e = open_dir(&r.join("link/sub")).unwrap_err();
        assert!(e.to_string().contains("not followed"), "{e}");
        assert!(open_dir(&r.join("link")).is_err());
    }

    #[test]
    fn ensure_dir_creates_with_mode_and_refuses_a_link() {
        let t = tempfile::tempdir().unwrap();
        let parent = open_dir(t.path()).unwrap();
        let (_, created) = ensure_dir_at(&parent, "d", 0o700, None).unwrap();
        assert!(created);
        let m = std::fs::metadata(t.path().join("d")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o700);
        let (_, again) = ensure_dir_at(&parent, "d", 0o700, None).unwrap();
        assert!(!again);
        std::os::unix::fs::symlink("/etc", t.path().join("l")).unwrap();
        assert!(ensure_dir_at(&parent, "l", 0o700, None).is_err());
        assert!(ensure_dir_at(&parent, "../x", 0o700, None).is_err());
    }

    #[test]
    fn write_replaces_a_planted_link_and_hard_link_without_writing_through() {
        let t = tempfile::tempdir().unwrap();
        let dir = open_dir(t.path()).unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, "secret").unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join("sym")).unwrap();
        std::fs::hard_link(&victim, t.path().join("hard")).unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        write_file_at(&dir, "sym", b"new", 0o644, me).unwrap();
        write_file_at(&dir, "hard", b"new", 0o600, me).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        assert_eq!(
            std::fs::read_to_string(t.path().join("hard")).unwrap(),
            "new"
        );
        let m = std::fs::symlink_metadata(t.path().join("sym")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o7777, 0o644);
        let leftovers: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("ws-init"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn read_refuses_links_fifos_and_files_of_others() {
        let t = tempfile::tempdir().unwrap();
        let dir = open_dir(t.path()).unwrap();
        let me = nix::unistd::getuid().as_raw();
        std::fs::write(t.path().join("f"), "x").unwrap();
        assert_eq!(read_file_at(&dir, "f", me).unwrap(), Some(b"x".to_vec()));
        assert_eq!(read_file_at(&dir, "none", me).unwrap(), None);
        assert!(read_file_at(&dir, "f", me + 1).is_err());
        std::os::unix::fs::symlink(t.path().join("f"), t.path().join("s")).unwrap();
        assert!(read_file_at(&dir, "s", me).is_err());
        nix::unistd::mkfifo(&t.path().join("p"), Mode::from_bits_truncate(0o600)).unwrap();
        assert!(read_file_at(&dir, "p", me).is_err());
    }
}
