//! The system calls the preparation steps make, behind one trait (as youki's
//! `Syscall`): [`RealSyscalls`] performs them; the recording implementation in
//! the unit tests answers from a table and records every change, so the
//! decisions around the calls (which mounts to remount and with which flags,
//! the EBUSY retry bound, vanished PIDs) are tested without root. The real
//! calls are covered by `tests/prepare_real.rs`.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::statvfs::FsFlags;

pub trait Syscalls {
    /// mount(2) without data.
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
    ) -> nix::Result<()>;
    /// The per-mount flags of the filesystem holding `path` (statvfs(2)).
    fn mount_flags(&self, path: &Path) -> nix::Result<FsFlags>;
    fn is_dir(&self, path: &Path) -> bool;
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// One write(2) of `text` to an existing file (a cgroup control file
    /// takes one value per write).
    fn write_file(&self, path: &Path, text: &str) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
}

/// The system calls themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealSyscalls;

impl Syscalls for RealSyscalls {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, None::<&str>)
    }

    fn mount_flags(&self, path: &Path) -> nix::Result<FsFlags> {
        nix::sys::statvfs::statvfs(path).map(|s| s.flags())
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn write_file(&self, path: &Path, text: &str) -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).open(path)?;
        f.write_all(text.as_bytes())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
pub mod recording {
    //! A [`Syscalls`] that answers from a table: files to read (a sequence
    //! of contents per file, one per read, the last one repeated), mount
    //! flags per path, directories, and faults (an errno for the first N
    //! changes of a path). Every change is recorded in order.

    use std::cell::RefCell;
    use std::collections::{HashMap, HashSet, VecDeque};
    use std::io;
    use std::path::{Path, PathBuf};

    use nix::errno::Errno;
    use nix::mount::MsFlags;
    use nix::sys::statvfs::FsFlags;

    use super::Syscalls;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        Mount {
            source: Option<String>,
            target: PathBuf,
            fstype: Option<String>,
            flags: MsFlags,
        },
        CreateDir(PathBuf),
        Write(PathBuf, String),
        Remove(PathBuf),
    }

    impl Call {
        fn path(&self) -> &Path {
            match self {
                Call::Mount { target, .. } => target,
                Call::CreateDir(p) | Call::Write(p, _) | Call::Remove(p) => p,
            }
        }
    }

    struct Fault {
        path: PathBuf,
        /// Only writes of this text (`None`: any change of `path`).
        text: Option<String>,
        errno: i32,
        /// How many more times it fails (`u32::MAX`: always).
        left: u32,
    }

    #[derive(Default)]
    pub struct Recording {
        calls: RefCell<Vec<Call>>,
        files: RefCell<HashMap<PathBuf, VecDeque<String>>>,
        mount_flags: HashMap<PathBuf, FsFlags>,
        dirs: HashSet<PathBuf>,
        faults: RefCell<Vec<Fault>>,
    }

    impl Recording {
        /// `path` reads as each of `contents` in turn, then as the last one.
        pub fn file(self, path: &str, contents: &[&str]) -> Self {
            self.files.borrow_mut().insert(
                path.into(),
                contents.iter().map(|c| c.to_string()).collect(),
            );
            self
        }

        pub fn dir(mut self, path: &str) -> Self {
            self.dirs.insert(path.into());
            self
        }

        pub fn mounted(mut self, path: &str, flags: FsFlags) -> Self {
            self.mount_flags.insert(path.into(), flags);
            self
        }

        /// The next `times` changes of `path` (writes of `text` only, when
        /// given) fail with `errno`.
        pub fn fail(self, path: &str, text: Option<&str>, errno: i32, times: u32) -> Self {
            self.faults.borrow_mut().push(Fault {
                path: path.into(),
                text: text.map(str::to_owned),
                errno,
                left: times,
            });
            self
        }

        pub fn calls(&self) -> Vec<Call> {
            self.calls.borrow().clone()
        }

        /// The texts written to `path`, in order (failed writes included).
        pub fn writes_to(&self, path: &str) -> Vec<String> {
            self.calls
                .borrow()
                .iter()
                .filter_map(|c| match c {
                    Call::Write(p, t) if p == Path::new(path) => Some(t.clone()),
                    _ => None,
                })
                .collect()
        }

        /// Records `call`, then fails it if a fault matches.
        fn change(&self, call: Call) -> Result<(), i32> {
            let text = match &call {
                Call::Write(_, t) => Some(t.clone()),
                _ => None,
            };
            let path = call.path().to_owned();
            self.calls.borrow_mut().push(call);
            let mut faults = self.faults.borrow_mut();
            let hit = faults
                .iter_mut()
                .find(|f| f.left > 0 && f.path == path && (f.text.is_none() || f.text == text));
            match hit {
                Some(f) => {
                    f.left = f.left.saturating_sub(u32::from(f.left != u32::MAX));
                    Err(f.errno)
                }
                None => Ok(()),
            }
        }
    }

    impl Syscalls for Recording {
        fn mount(
            &self,
            source: Option<&str>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
        ) -> nix::Result<()> {
            self.change(Call::Mount {
                source: source.map(str::to_owned),
                target: target.to_owned(),
                fstype: fstype.map(str::to_owned),
                flags,
            })
            .map_err(Errno::from_raw)
        }

        fn mount_flags(&self, path: &Path) -> nix::Result<FsFlags> {
            self.mount_flags.get(path).copied().ok_or(Errno::ENOENT)
        }

        fn is_dir(&self, path: &Path) -> bool {
            self.dirs.contains(path)
        }

        fn read_to_string(&self, path: &Path) -> io::Result<String> {
            let mut files = self.files.borrow_mut();
            let contents = files
                .get_mut(path)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
            let text = if contents.len() > 1 {
                contents.pop_front()
            } else {
                contents.front().cloned()
            };
            Ok(text.unwrap_or_default())
        }

        fn create_dir(&self, path: &Path) -> io::Result<()> {
            self.change(Call::CreateDir(path.to_owned()))
                .map_err(io::Error::from_raw_os_error)
        }

        fn write_file(&self, path: &Path, text: &str) -> io::Result<()> {
            self.change(Call::Write(path.to_owned(), text.to_owned()))
                .map_err(io::Error::from_raw_os_error)
        }

        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.change(Call::Remove(path.to_owned()))
                .map_err(io::Error::from_raw_os_error)
        }
    }
}
