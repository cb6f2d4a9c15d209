//! How a child ended, and the exit status ws-init reports for it.

use std::io;

/// Exit status for a command that could not be found (shell convention).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit status for a command that was found but could not be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// Exit status for a startup error of ws-init itself (bad configuration, usage).
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Exited(i32),
    Signaled { signal: i32, core_dumped: bool },
}

impl ChildExit {
    /// The status a shell would report: the code, or 128+N for death by signal N.
    pub fn exit_code(&self) -> i32 {
        match *self {
            ChildExit::Exited(code) => code,
            ChildExit::Signaled { signal, .. } => 128 + signal,
        }
    }

    /// How a child ended, from the status `waitpid` filled in; `None` for a
    /// stop or a continue (the child is still there).
    pub fn from_raw_wait_status(status: i32) -> Option<ChildExit> {
        if libc::WIFEXITED(status) {
            Some(ChildExit::Exited(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(ChildExit::Signaled {
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            })
        } else {
            None
        }
    }
}

impl std::fmt::Display for ChildExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ChildExit::Exited(code) => write!(f, "exited with status {code}"),
            ChildExit::Signaled {
                signal,
                core_dumped,
            } => {
                match crate::signals::known_name(signal) {
                    Some(name) => write!(f, "killed by {name}")?,
                    None => write!(f, "killed by signal {signal}")?,
                }
                if core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// The exit status for a command that could not be started, from the spawn error.
pub fn spawn_error_code(err: &io::Error) -> i32 {
    match err.kind() {
        io::ErrorKind::NotFound => EXIT_NOT_FOUND,
        _ => match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => EXIT_NOT_FOUND,
            _ => EXIT_NOT_EXECUTABLE,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(ChildExit::Exited(0).exit_code(), 0);
        assert_eq!(ChildExit::Exited(7).exit_code(), 7);
        let term = ChildExit::Signaled {
            signal: 15,
            core_dumped: false,
        };
        assert_eq!(term.exit_code(), 143);
        assert_eq!(term.to_string(), "killed by SIGTERM");
        let kill = ChildExit::Signaled {
            signal: 9,
            core_dumped: true,
        };
        assert_eq!(kill.exit_code(), 137);
        assert_eq!(kill.to_string(), "killed by SIGKILL (core dumped)");
        let rt = ChildExit::Signaled {
            signal: 40,
            core_dumped: false,
        };
        assert_eq!(rt.to_string(), "killed by signal 40");
    }

    #[test]
    fn wait_statuses_map_to_child_exits() {
        // The encoding of <bits/waitstatus.h>.
        assert_eq!(
            ChildExit::from_raw_wait_status(3 << 8),
            Some(ChildExit::Exited(3))
        );
        assert_eq!(
            ChildExit::from_raw_wait_status(libc::SIGINT),
            Some(ChildExit::Signaled {
                signal: 2,
                core_dumped: false
            })
        );
        assert_eq!(
            ChildExit::from_raw_wait_status(0x80 | libc::SIGSEGV),
            Some(ChildExit::Signaled {
                signal: 11,
                core_dumped: true
            })
        );
        let stopped = (libc::SIGSTOP << 8) | 0x7f;
        assert_eq!(ChildExit::from_raw_wait_status(stopped), None);
        let continued = 0xffff;
        assert_eq!(ChildExit::from_raw_wait_status(continued), None);
    }

    /// Statuses the kernel gives for real children.
    #[test]
    fn real_children_end_as_waitpid_says() {
        let _children = crate::test_support::children_lock();
        let wait = |script: &str| {
            // Waited for by pid below: std's Child is not what reaps it.
            let pid = std::process::Command::new("/bin/sh")
                .args(["-c", script])
                .spawn()
                .unwrap()
                .id() as i32;
            let mut status = 0;
            // SAFETY: waitpid on our own child, writing one int.
            let got = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(got, pid);
            ChildExit::from_raw_wait_status(status)
        };
        assert_eq!(wait("exit 3"), Some(ChildExit::Exited(3)));
        assert_eq!(
            wait("kill -TERM $$"),
            Some(ChildExit::Signaled {
                signal: libc::SIGTERM,
                core_dumped: false
            })
        );
    }

    #[test]
    fn spawn_errors_map_to_127_and_126() {
        assert_eq!(
            spawn_error_code(&io::Error::from(io::ErrorKind::NotFound)),
            127
        );
        assert_eq!(
            spawn_error_code(&io::Error::from_raw_os_error(libc::ENOENT)),
            127
        );
        assert_eq!(
            spawn_error_code(&io::Error::from_raw_os_error(libc::EACCES)),
            126
        );
        assert_eq!(
            spawn_error_code(&io::Error::from_raw_os_error(libc::ENOEXEC)),
            126
        );
    }
}
