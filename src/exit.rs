//! How a child ended, and the exit status ws-init reports for it.

use std::io;

/// Exit status for a command that could not be found (shell convention).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit status for a command that was found but could not be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// Exit status for a startup error of ws-init itself (bad configuration, usage).
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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

    pub fn from_wait_status(status: nix::sys::wait::WaitStatus) -> Option<(i32, ChildExit)> {
        use nix::sys::wait::WaitStatus;
        match status {
            WaitStatus::Exited(pid, code) => Some((pid.as_raw(), ChildExit::Exited(code))),
            WaitStatus::Signaled(pid, sig, core) => Some((
                pid.as_raw(),
                ChildExit::Signaled {
                    signal: sig as i32,
                    core_dumped: core,
                },
            )),
            _ => None,
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
                let name = nix::sys::signal::Signal::try_from(signal)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {signal}"));
                write!(
                    f,
                    "killed by {name}{}",
                    if core_dumped { " (core dumped)" } else { "" }
                )
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
    use nix::sys::signal::Signal;
    use nix::sys::wait::WaitStatus;
    use nix::unistd::Pid;

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
    }

    #[test]
    fn wait_statuses_map_to_child_exits() {
        let p = Pid::from_raw(42);
        assert_eq!(
            ChildExit::from_wait_status(WaitStatus::Exited(p, 3)),
            Some((42, ChildExit::Exited(3)))
        );
        assert_eq!(
            ChildExit::from_wait_status(WaitStatus::Signaled(p, Signal::SIGINT, false)),
            Some((
                42,
                ChildExit::Signaled {
                    signal: 2,
                    core_dumped: false
                }
            ))
        );
        assert_eq!(ChildExit::from_wait_status(WaitStatus::StillAlive), None);
        assert_eq!(
            ChildExit::from_wait_status(WaitStatus::Stopped(p, Signal::SIGSTOP)),
            None
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
