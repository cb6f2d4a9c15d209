//! The size-bounded log file, rotated to one old generation, opened without
//! following a link and reopened with backoff after an error.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::atomic::Dir;

/// First wait before reopening the log after an error; doubles up to
/// [`REOPEN_MAX_DELAY`].
pub const REOPEN_FIRST_DELAY: Duration = Duration::from_secs(1);
pub const REOPEN_MAX_DELAY: Duration = Duration::from_secs(60);

/// An append-only log file that rotates to `<path>.1` (one old generation)
/// before a write would take it past `max_bytes`.
///
/// The directory may be one a user can write (`WS_DOCKERD_LOG` is free), so
/// nothing here follows a link: the file is opened with `O_NOFOLLOW`
/// relative to the opened directory, a link or other non-file planted at its
/// name is removed (with a warning) and a fresh file created, owner and mode
/// (`root:<docker gid> 0640`, so the docker group can read what dockerd's
/// errors point to) are set on the open descriptor, and rotation renames
/// within that directory or, failing that, truncates the file we hold open.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    name: std::ffi::OsString,
    gid: u32,
    max_bytes: u64,
    dir: Option<Dir>,
    file: Option<File>,
    size: u64,
    /// A failure was reported and not yet followed by a success.
    failed: bool,
    /// When to try opening again after a failure, and the wait after that.
    retry_at: Option<Instant>,
    retry_delay: Duration,
}

impl LogFile {
    /// Opens (creating the directory if needed) for appending, group `gid`
    /// (the docker group). A file that cannot be opened is reported once;
    /// lines are then only echoed until a reopen succeeds.
    pub fn open(path: &Path, max_bytes: u64, gid: u32) -> LogFile {
        let mut log = LogFile {
            path: path.to_path_buf(),
            name: path.file_name().unwrap_or_default().to_owned(),
            gid,
            max_bytes,
            dir: None,
            file: None,
            size: 0,
            failed: false,
            retry_at: None,
            retry_delay: REOPEN_FIRST_DELAY,
        };
        log.reopen();
        log
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reopen(&mut self) {
        self.file = None;
        let result = (|| -> io::Result<(File, u64)> {
            if self.dir.is_none() {
                let parent = self.path.parent().unwrap_or(Path::new("/"));
                // The directory's own path is root's configuration: followed.
                std::fs::create_dir_all(parent)?;
                self.dir = Some(Dir::open(parent)?);
            }
            let dir = self.dir.as_ref().expect("opened above");
            let file = open_log_in(dir, &self.name, &self.path, self.gid)?;
            let size = file.metadata()?.len();
            Ok((file, size))
        })();
        match result {
            Ok((file, size)) => {
                if self.failed {
                    info!("the dockerd log {} is written again", self.path.display());
                }
                self.file = Some(file);
                self.size = size;
                self.failed = false;
                self.retry_at = None;
                self.retry_delay = REOPEN_FIRST_DELAY;
            }
            Err(e) => {
                // The directory may have been replaced: look it up again next time.
                self.dir = None;
                self.fail("open", e);
            }
        }
    }

    fn fail(&mut self, what: &str, e: io::Error) {
        self.file = None;
        if !self.failed {
            warn!(
                "cannot {what} the dockerd log {}: {e}; dockerd's warnings still reach stderr \
                 and ws-init keeps retrying (free disk space, or set WS_DOCKERD_LOG to a \
                 writable path)",
                self.path.display()
            );
        }
        self.failed = true;
        let now = Instant::now();
        self.retry_at = Some(now + self.retry_delay);
        self.retry_delay = (self.retry_delay * 2).min(REOPEN_MAX_DELAY);
    }

    /// The rotated generation's path: `<path>.1`.
    pub fn old_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }

    /// Appends `line` and a newline.
    pub fn write_line(&mut self, line: &[u8]) {
        if self.file.is_none() && self.retry_at.is_some_and(|at| Instant::now() >= at) {
            self.reopen();
        }
        let len = line.len() as u64 + 1;
        if self.file.is_some() && self.size > 0 && self.size + len > self.max_bytes {
            self.rotate();
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        match file.write_all(&buf) {
            Ok(()) => self.size += len,
            Err(e) => self.fail("write", e),
        }
    }

    fn rotate(&mut self) {
        let (Some(dir), Some(file)) = (self.dir.as_ref(), self.file.as_ref()) else {
            return;
        };
        let mut old = self.name.clone();
        old.push(".1");
        match dir.rename(&self.name, &old) {
            Ok(()) => self.reopen(),
            Err(e) => {
                // Keep the bound even if the old generation cannot be kept:
                // truncate the file we hold, never a path (it may be a link now).
                debug!("cannot rotate {}: {e}; truncating it", self.path.display());
                match file.set_len(0) {
                    Ok(()) => self.size = 0,
                    Err(e) => self.fail("truncate", e),
                }
            }
        }
    }
}

/// Opens `name` in `dir` for appending without following a link. Anything
/// but a regular file with one link (a symlink, a hard link to another file,
/// a fifo) is removed with a warning and replaced by a new file.
fn open_log_in(dir: &Dir, name: &std::ffi::OsStr, path: &Path, gid: u32) -> io::Result<File> {
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NONBLOCK;
    for _ in 0..3 {
        let planted = match dir.open_file(name, flags, 0o640) {
            Ok(file) => {
                let meta = file.metadata()?;
                if meta.is_file() && meta.nlink() == 1 {
                    // SAFETY: geteuid has no preconditions and cannot fail.
                    if unsafe { libc::geteuid() } == 0 {
                        std::os::unix::fs::fchown(&file, Some(0), Some(gid))?;
                    }
                    file.set_permissions(std::fs::Permissions::from_mode(0o640))?;
                    return Ok(file);
                }
                if meta.is_file() {
                    "a hard link to another file"
                } else {
                    "not a regular file"
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => "a symbolic link",
            // A fifo without a reader.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => "not a regular file",
            Err(e) => return Err(e),
        };
        warn!(
            "the dockerd log {} is {planted}; ws-init does not write through it and replaces it \
             with a new file",
            path.display()
        );
        dir.unlink(name)?;
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "something keeps replacing it with a link",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_rotates_to_one_old_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dockerd.log");
        let mut log = LogFile::open(&path, 100, 999);
        for i in 0..30 {
            log.write_line(format!("line {i:03} ........").as_bytes()); // 21 bytes with newline
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(log.old_path()).unwrap();
        assert!(
            current.len() <= 100 && old.len() <= 100,
            "{} {}",
            current.len(),
            old.len()
        );
        assert!(current.ends_with("line 029 ........\n"), "{current}");
        // Nothing lost between the generations: they are consecutive.
        let all: Vec<&str> = old.lines().chain(current.lines()).collect();
        let first: usize = all[0][5..8].parse().unwrap();
        for (i, l) in all.iter().enumerate() {
            assert_eq!(*l, format!("line {:03} ........", first + i));
        }
        assert!(!dir.path().join("sub/dockerd.log.2").exists());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn the_log_file_appends_to_what_is_there_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dockerd.log");
        std::fs::write(&path, "x".repeat(90) + "\n").unwrap();
        let mut log = LogFile::open(&path, 100, 999);
        log.write_line(b"short"); // 91 + 6 = 97: fits
        assert_eq!(std::fs::read_to_string(&path).unwrap().len(), 97);
        log.write_line(b"next"); // would be 102: rotates first
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "next\n");
        assert_eq!(std::fs::read_to_string(log.old_path()).unwrap().len(), 97);
    }

    #[test]
    fn a_line_longer_than_the_bound_is_still_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dockerd.log");
        let mut log = LogFile::open(&path, 10, 999);
        log.write_line(b"0123456789abcdef");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "0123456789abcdef\n"
        );
    }
}
