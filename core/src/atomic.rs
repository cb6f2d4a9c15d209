//! Files in directories a user may be able to write, handled as root without
//! following links: every operation is relative to an opened directory
//! ([`Dir`]), opens use `O_NOFOLLOW`, modes and owners are changed on the open
//! descriptor, and replacement is crash-safe (write a uniquely named
//! temporary file with `O_EXCL`, fsync it, rename it over the target, fsync
//! the directory). A reader sees the old or the new contents, never a mix,
//! and a crash never leaves a truncated `/etc/group` or half a certificate.
//!
//! The core's dockerd log needs only the opening and renaming part; the
//! bring-up program (group files, certificates) uses the rest.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode and owner for the new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Same mode and owner as the file being replaced (0644 root:root if new).
    KeepExisting,
    /// This mode; owner is whoever writes (root here).
    Mode(u32),
    /// This mode and owner (a file root writes for a user).
    Exact { mode: u32, uid: u32, gid: u32 },
}

/// The marker in our temporary names: `.<name>.ws-init-tmp.<unique>`.
const TEMP_MARKER: &str = ".ws-init-tmp.";

/// `bytes` as a C string; a NUL inside cannot name a file.
fn c_name(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a file name with a NUL byte in it",
        )
    })
}

/// The result of a call that returns -1 and sets `errno` on failure.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `openat(2)` retried on `EINTR`, owned on success.
fn openat(dir: RawFd, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `name` is a valid NUL-terminated string for the call's duration.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), flags, mode as libc::c_uint) };
        match check(fd) {
            // SAFETY: `openat` returned a fresh descriptor that nothing else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// An opened directory; every path below is a single name in it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens `path` (links in it are followed: it comes from root's own
    /// configuration, not from a user).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = c_name(path.as_os_str().as_bytes())?;
        let fd = openat(
            libc::AT_FDCWD,
            &c,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )?;
        Ok(Dir {
            fd,
            path: path.to_owned(),
        })
    }

    /// A directory already opened (without following links) by the caller;
    /// `path` only names it in messages.
    pub fn from_fd(fd: OwnedFd, path: PathBuf) -> Dir {
        Dir { fd, path }
    }

    /// Opens the sub-directory `name` without following a link, creating it
    /// (mode 0755) when `create` is set and it does not exist.
    pub fn open_sub(&self, name: &str, create: bool) -> io::Result<Dir> {
        let c = c_name(name.as_bytes())?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let open = || openat(self.raw(), &c, flags, 0);
        let fd = match open() {
            Err(e) if create && e.raw_os_error() == Some(libc::ENOENT) => {
                // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
                match check(unsafe { libc::mkdirat(self.raw(), c.as_ptr(), 0o755) }) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                open()
            }
            other => other,
        }
        .map_err(|e| match e.raw_os_error() {
            // O_NOFOLLOW on a link, or O_DIRECTORY on a file.
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a directory (a symbolic link or a file); ws-init does not follow \
                     links there",
                    self.path.join(name).display()
                ),
            ),
            _ => e,
        })?;
        Ok(Dir {
            fd,
            path: self.path.join(name),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// `lstat` of `name` (a link is reported as a link).
    pub fn stat(&self, name: &OsStr) -> io::Result<libc::stat> {
        let c = c_name(name.as_bytes())?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `c` is NUL-terminated and `st` is writable memory for one `stat`.
        check(unsafe {
            libc::fstatat(
                self.raw(),
                c.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        // SAFETY: `fstatat` succeeded, so it filled `st`.
        Ok(unsafe { st.assume_init() })
    }

    /// The directory itself.
    pub fn stat_self(&self) -> io::Result<libc::stat> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `st` is writable memory for one `stat`.
        check(unsafe { libc::fstat(self.raw(), st.as_mut_ptr()) })?;
        // SAFETY: `fstat` succeeded, so it filled `st`.
        Ok(unsafe { st.assume_init() })
    }

    /// Owned by root and writable by nobody else: no other user can plant
    /// anything in it.
    pub fn is_root_only(&self) -> bool {
        self.stat_self()
            .is_ok_and(|st| st.st_uid == 0 && st.st_mode & 0o022 == 0)
    }

    /// Opens `name` with `flags` (`libc::O_*`), never following a link
    /// (`O_NOFOLLOW`: a link gives `ELOOP`).
    pub fn open_file(&self, name: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<File> {
        let c = c_name(name.as_bytes())?;
        let fd = openat(
            self.raw(),
            &c,
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode,
        )?;
        Ok(File::from(fd))
    }

    /// Reads `name`; links are followed only when `follow_links` (use it
    /// only in a directory no other user can write, see [`Dir::is_root_only`]).
    pub fn read(&self, name: &OsStr, follow_links: bool) -> io::Result<Vec<u8>> {
        let c = c_name(name.as_bytes())?;
        let mut flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK;
        if !follow_links {
            flags |= libc::O_NOFOLLOW;
        }
        let fd = openat(self.raw(), &c, flags, 0).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::InvalidInput,
                "it is a symbolic link in a directory other users can write; ws-init does not \
                 follow it",
            ),
            _ => e,
        })?;
        let mut f = File::from(fd);
        if !f.metadata()?.is_file() {
            // A fifo or device would block or never end.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mut out = Vec::new();
        io::Read::read_to_end(&mut f, &mut out)?;
        Ok(out)
    }

    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (from, to) = (c_name(from.as_bytes())?, c_name(to.as_bytes())?);
        // SAFETY: both names are valid NUL-terminated strings for the call's duration.
        check(unsafe { libc::renameat(self.raw(), from.as_ptr(), self.raw(), to.as_ptr()) })
            .map(drop)
    }

    /// Removes the entry `name` itself (a link, not its target).
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        let c = c_name(name.as_bytes())?;
        // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
        check(unsafe { libc::unlinkat(self.raw(), c.as_ptr(), 0) }).map(drop)
    }

    /// Makes renames in this directory durable.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: fsync on a descriptor we own.
        check(unsafe { libc::fsync(self.raw()) }).map(drop)
    }

    /// Names in the directory.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        // A descriptor of its own: closedir closes it, and its read position
        // is not shared with `self`.
        let fd = openat(
            self.raw(),
            c".",
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )?;
        let raw = fd.as_raw_fd();
        // SAFETY: `raw` is an open directory descriptor; on success the
        // stream owns it (released from `fd` below), on failure `fd` closes it.
        let stream = unsafe { libc::fdopendir(raw) };
        if stream.is_null() {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(fd);
        let mut names = Vec::new();
        let result = loop {
            // SAFETY: errno is thread-local; clearing it tells the end of the
            // stream (NULL, errno 0) from an error (NULL, errno set).
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `stream` is an open directory stream used by this thread only.
            let entry = unsafe { libc::readdir(stream) };
            if entry.is_null() {
                let e = io::Error::last_os_error();
                break if e.raw_os_error() == Some(0) {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            // SAFETY: readdir returned a valid entry whose `d_name` is
            // NUL-terminated and lives until the next readdir on `stream`.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_owned());
            }
        };
        // SAFETY: `stream` came from fdopendir and is closed exactly once.
        unsafe { libc::closedir(stream) };
        result.map(|()| names)
    }

    /// Removes temporary files of ours for `target` that a crash left
    /// behind; returns their names.
    pub fn remove_leftover_temps(&self, target: &OsStr) -> io::Result<Vec<OsString>> {
        let mut prefix = OsString::from(".");
        prefix.push(target);
        prefix.push(TEMP_MARKER);
        let mut removed = Vec::new();
        for name in self.names()? {
            if name.as_bytes().starts_with(prefix.as_bytes())
                && self
                    .stat(&name)
                    .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
            {
                self.unlink(&name)?;
                removed.push(name);
            }
        }
        Ok(removed)
    }

    /// Writes `contents` to a new temporary file beside `target`, with its
    /// final mode and owner, synced; [`Staged::commit`] renames it over `target`.
    pub fn stage(
        &self,
        target: &OsStr,
        contents: &[u8],
        ownership: Ownership,
    ) -> io::Result<Staged<'_>> {
        let existing = self
            .stat(target)
            .ok()
            .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
        let (mode, owner) = match (ownership, existing) {
            (Ownership::Mode(m), _) => (m, None),
            (Ownership::Exact { mode, uid, gid }, _) => (mode, Some((uid, gid))),
            (Ownership::KeepExisting, Some(st)) => {
                (st.st_mode & 0o7777, Some((st.st_uid, st.st_gid)))
            }
            (Ownership::KeepExisting, None) => (0o644, None),
        };
        let (tmp, mut f) = self.create_temp(target)?;
        let staged = Staged {
            dir: self,
            tmp,
            target: target.to_owned(),
            done: false,
        };
        f.write_all(contents)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        // After fchown: chown clears set-id bits, and the umask must not apply.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        Ok(staged)
    }

    /// A new file `.<target>.ws-init-tmp.<unique>` (mode 0600, `O_EXCL`).
    fn create_temp(&self, target: &OsStr) -> io::Result<(OsString, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let mut name = OsString::from(".");
            name.push(target);
            name.push(format!(
                "{TEMP_MARKER}{}.{nanos}.{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match self.open_file(&name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600) {
                Ok(f) => return Ok((name, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Replaces `target` in this directory atomically (see module docs).
    pub fn write_atomically(
        &self,
        target: &OsStr,
        contents: &[u8],
        ownership: Ownership,
    ) -> io::Result<()> {
        self.stage(target, contents, ownership)?.commit()?;
        self.sync()
    }
}

/// A temporary file written and synced, waiting to replace its target; it is
/// removed when dropped uncommitted.
#[derive(Debug)]
pub struct Staged<'a> {
    dir: &'a Dir,
    tmp: OsString,
    target: OsString,
    done: bool,
}

impl Staged<'_> {
    /// Renames the temporary file over the target (the directory is not
    /// synced: call [`Dir::sync`] after the last commit).
    pub fn commit(mut self) -> io::Result<()> {
        self.dir.rename(&self.tmp, &self.target)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.dir.unlink(&self.tmp);
        }
    }
}

fn split(path: &Path) -> io::Result<(Dir, OsString)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
    Ok((
        Dir::open(parent.unwrap_or(Path::new(".")))?,
        name.to_owned(),
    ))
}

/// Replace `path` with `contents` atomically (see module docs). The last
/// component is never followed: a link there is replaced, not written through.
pub fn write_atomically_with(path: &Path, contents: &[u8], ownership: Ownership) -> io::Result<()> {
    let (dir, name) = split(path)?;
    dir.write_atomically(&name, contents, ownership)
}

/// Replace `path` keeping its mode and owner (0644 when it did not exist).
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomically_with(path, contents, Ownership::KeepExisting)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn keeps_mode_and_owner_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("group");
        std::fs::write(&p, "old\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        // A distinct owner when we can set one (root), to see it is kept.
        let is_root = is_root();
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

    #[test]
    fn a_link_at_the_target_is_replaced_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let p = tmp.path().join("key.pem");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_atomically_with(&p, b"new", Ownership::Mode(0o644)).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(std::fs::symlink_metadata(&p).unwrap().is_file());
    }

    #[test]
    fn leftover_temps_of_ours_are_removed_and_only_those() {
        let tmp = tempfile::tempdir().unwrap();
        for name in [
            ".group.ws-init-tmp.1",
            ".group.ws-init-tmp.7.5.0",
            ".group-",
            "group",
        ] {
            std::fs::write(tmp.path().join(name), "x").unwrap();
        }
        let dir = Dir::open(tmp.path()).unwrap();
        let mut removed = dir.remove_leftover_temps(OsStr::new("group")).unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [".group.ws-init-tmp.1", ".group.ws-init-tmp.7.5.0"]
        );
        let mut left: Vec<_> = dir.names().unwrap();
        left.sort();
        assert_eq!(left, [".group-", "group"]);
    }

    #[test]
    fn reading_a_link_is_refused_unless_allowed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("real"), "r").unwrap();
        std::os::unix::fs::symlink("real", tmp.path().join("link")).unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let e = dir.read(OsStr::new("link"), false).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(dir.read(OsStr::new("link"), true).unwrap(), b"r");
    }

    #[test]
    fn sub_directories_are_created_and_links_to_them_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let sub = dir.open_sub("ca", true).unwrap();
        assert_eq!(sub.path(), tmp.path().join("ca"));
        assert!(tmp.path().join("ca").is_dir());
        std::os::unix::fs::symlink("ca", tmp.path().join("link")).unwrap();
        let e = dir.open_sub("link", false).unwrap_err();
        assert!(e.to_string().contains("does not follow links"), "{e}");
        let e = dir.open_sub("missing", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
