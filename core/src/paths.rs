//! Where ws-init's two programs are: the resident core `ws-init` and the
//! short-lived `ws-init-bringup`. Side by side (a build tree, a copy in one
//! directory), or installed as `/usr/local/bin/ws-init` and
//! `/usr/local/libexec/ws-init/ws-init-bringup`. Either is found from the
//! running program's own path, never from `PATH`, and run as root only when
//! no one but root could have replaced it.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const CORE_NAME: &str = "ws-init";
pub const BRINGUP_NAME: &str = "ws-init-bringup";
/// The bring-up program's place relative to the core's directory's parent.
const LIBEXEC_DIR: &str = "libexec/ws-init";

/// Where `ws-init-bringup` may be, best first, for a program running from `dir`.
pub fn bringup_candidates(dir: &Path) -> Vec<PathBuf> {
    let mut c = vec![dir.join(BRINGUP_NAME)];
    if let Some(prefix) = dir.parent() {
        c.push(prefix.join(LIBEXEC_DIR).join(BRINGUP_NAME));
    }
    c
}

/// Where `ws-init` (the core) may be, best first, for a program running
/// from `dir` (`/usr/local/libexec/ws-init` → `/usr/local/bin/ws-init`).
pub fn core_candidates(dir: &Path) -> Vec<PathBuf> {
    let mut c = vec![dir.join(CORE_NAME)];
    if let Some(prefix) = dir.parent().and_then(Path::parent) {
        c.push(prefix.join("bin").join(CORE_NAME));
    }
    c
}

/// What ws-init needs to know about a program file before running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    pub kind: FileKind,
    pub uid: u32,
    pub mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Symlink,
    Other,
}

impl FileFacts {
    fn of(meta: &std::fs::Metadata) -> FileFacts {
        let t = meta.file_type();
        let kind = if t.is_file() {
            FileKind::Regular
        } else if t.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        };
        FileFacts {
            kind,
            uid: meta.uid(),
            mode: meta.mode(),
        }
    }
}

/// Why a program cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramError {
    /// `/proc/self/exe` cannot be read, so there is nothing to look next to.
    NoSelf(String),
    NotFound {
        name: &'static str,
        tried: Vec<PathBuf>,
    },
    /// Found, but someone other than root could have put it there.
    Untrusted { path: PathBuf, why: String },
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProgramError::NoSelf(e) => write!(
                f,
                "cannot read /proc/self/exe ({e}) to find ws-init's programs; mount /proc in the container"
            ),
            ProgramError::NotFound { name, tried } => {
                let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "{name} not found (looked at {}); install both programs, ws-init in /usr/local/bin and \
                     ws-init-bringup in /usr/local/libexec/ws-init (or both in one directory)",
                    tried.join(" and ")
                )
            }
            ProgramError::Untrusted { path, why } => write!(
                f,
                "refusing to run {} as root: {why}",
                path.display()
            ),
        }
    }
}

/// Root runs only a regular file that root owns and only root can write:
/// anyone else able to replace it would get root.
pub fn check_trusted(path: &Path, facts: FileFacts) -> Result<(), ProgramError> {
    let p = path.display();
    let why = match facts.kind {
        FileKind::Symlink => Some(format!(
            "it is a symbolic link; install the program itself there (install -m 0755 -o root -g root FILE {p})"
        )),
        FileKind::Other => Some(format!(
            "it is not a regular file; install the program there (install -m 0755 -o root -g root FILE {p})"
        )),
        FileKind::Regular if facts.uid != 0 => Some(format!(
            "it is owned by uid {}, not root; fix: chown root:root {p}",
            facts.uid
        )),
        FileKind::Regular if facts.mode & 0o022 != 0 => Some(format!(
            "its group or others may write it (mode {:04o}); fix: chmod go-w {p}",
            facts.mode & 0o7777
        )),
        FileKind::Regular => None,
    };
    match why {
        Some(why) => Err(ProgramError::Untrusted {
            path: path.to_path_buf(),
            why,
        }),
        None => Ok(()),
    }
}

/// The first candidate that exists (`facts` answers `None` for a missing
/// one), checked when running as root.
pub fn choose(
    name: &'static str,
    candidates: &[PathBuf],
    as_root: bool,
    facts: impl Fn(&Path) -> Option<FileFacts>,
) -> Result<PathBuf, ProgramError> {
    for c in candidates {
        if let Some(f) = facts(c) {
            if as_root {
                check_trusted(c, f)?;
            }
            return Ok(c.clone());
        }
    }
    Err(ProgramError::NotFound {
        name,
        tried: candidates.to_vec(),
    })
}

fn find(
    name: &'static str,
    candidates: fn(&Path) -> Vec<PathBuf>,
) -> Result<PathBuf, ProgramError> {
    let exe =
        std::fs::read_link("/proc/self/exe").map_err(|e| ProgramError::NoSelf(e.to_string()))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    // SAFETY: geteuid has no preconditions and cannot fail.
    let as_root = unsafe { libc::geteuid() } == 0;
    choose(name, &candidates(dir), as_root, |p| {
        std::fs::symlink_metadata(p).ok().map(|m| FileFacts::of(&m))
    })
}

/// `ws-init-bringup`, found from the running program.
pub fn bringup_program() -> Result<PathBuf, ProgramError> {
    find(BRINGUP_NAME, bringup_candidates)
}

/// The resident core `ws-init`, found from the running program.
pub fn core_program() -> Result<PathBuf, ProgramError> {
    find(CORE_NAME, core_candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: FileFacts = FileFacts {
        kind: FileKind::Regular,
        uid: 0,
        mode: 0o100755,
    };

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn candidates_next_to_the_program_then_the_installed_layout() {
        assert_eq!(
            bringup_candidates(Path::new("/usr/local/bin")),
            [
                p("/usr/local/bin/ws-init-bringup"),
                p("/usr/local/libexec/ws-init/ws-init-bringup")
            ]
        );
        assert_eq!(
            core_candidates(Path::new("/usr/local/libexec/ws-init")),
            [
                p("/usr/local/libexec/ws-init/ws-init"),
                p("/usr/local/bin/ws-init")
            ]
        );
        assert_eq!(bringup_candidates(Path::new("/")), [p("/ws-init-bringup")]);
        assert_eq!(core_candidates(Path::new("/opt")), [p("/opt/ws-init")]);
    }

    #[test]
    fn the_first_that_exists_wins() {
        let c = bringup_candidates(Path::new("/usr/local/bin"));
        let only = |want: &'static str| move |q: &Path| (q == Path::new(want)).then_some(GOOD);
        assert_eq!(
            choose(
                BRINGUP_NAME,
                &c,
                true,
                only("/usr/local/bin/ws-init-bringup")
            ),
            Ok(c[0].clone())
        );
        assert_eq!(
            choose(
                BRINGUP_NAME,
                &c,
                true,
                only("/usr/local/libexec/ws-init/ws-init-bringup")
            ),
            Ok(c[1].clone())
        );
        assert_eq!(
            choose(BRINGUP_NAME, &c, true, |_| Some(GOOD)),
            Ok(c[0].clone())
        );
        let e = choose(BRINGUP_NAME, &c, true, |_| None).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("ws-init-bringup not found (looked at /usr/local/bin/ws-init-bringup and /usr/local/libexec/ws-init/ws-init-bringup)"),
            "{msg}"
        );
    }

    #[test]
    fn root_runs_only_what_only_root_can_replace() {
        let path = p("/usr/local/libexec/ws-init/ws-init-bringup");
        assert_eq!(check_trusted(&path, GOOD), Ok(()));
        assert_eq!(
            check_trusted(
                &path,
                FileFacts {
                    mode: 0o100700,
                    ..GOOD
                }
            ),
            Ok(())
        );
        for (bad, says) in [
            (FileFacts { uid: 1000, ..GOOD }, "owned by uid 1000, not root; fix: chown root:root /usr/local/libexec/ws-init/ws-init-bringup"),
            (FileFacts { mode: 0o100775, ..GOOD }, "(mode 0775); fix: chmod go-w"),
            (FileFacts { mode: 0o100757, ..GOOD }, "(mode 0757)"),
            (FileFacts { kind: FileKind::Symlink, ..GOOD }, "is a symbolic link"),
            (FileFacts { kind: FileKind::Other, ..GOOD }, "not a regular file"),
        ] {
            let msg = check_trusted(&path, bad).unwrap_err().to_string();
            assert!(
                msg.starts_with("refusing to run /usr/local/libexec/ws-init/ws-init-bringup as root: ")
                    && msg.contains(says),
                "{msg}"
            );
        }
        // Not root: whatever is there runs (it runs with the caller's rights).
        let c = [path.clone()];
        let mine = FileFacts {
            uid: 1000,
            mode: 0o100777,
            ..GOOD
        };
        assert_eq!(
            choose(BRINGUP_NAME, &c, false, |_| Some(mine)),
            Ok(path.clone())
        );
        assert!(choose(BRINGUP_NAME, &c, true, |_| Some(mine)).is_err());
    }

    #[test]
    fn a_real_file_is_judged_by_its_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(BRINGUP_NAME);
        std::fs::write(&f, "").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let facts = FileFacts::of(&std::fs::symlink_metadata(&link).unwrap());
        assert_eq!(facts.kind, FileKind::Symlink);
        let facts = FileFacts::of(&std::fs::symlink_metadata(&f).unwrap());
        assert_eq!(facts.kind, FileKind::Regular);
        // SAFETY: geteuid has no preconditions.
        assert_eq!(facts.uid, unsafe { libc::geteuid() });
    }
}
