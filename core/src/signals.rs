//! How ws-init receives signals: every catchable one is blocked in every
//! thread and read from one `signalfd`.
//!
//! Why not handlers (tokio's, signal-hook's): they refuse SIGILL, SIGFPE and
//! SIGSEGV, and the libc wrappers refuse 32..=34, yet ws-init must forward all
//! of them (design §5, as tini does). A blocked signal is queued whatever its
//! disposition, also for PID 1 (the kernel drops default-action signals to
//! PID 1 only when they are not blocked), and a signalfd hands it out with
//! its sender. A fault of ws-init itself (a real SIGSEGV) is not affected:
//! the kernel unblocks a synchronous fault signal and the process dies.
//!
//! The mask must be set before any thread exists (threads inherit it): call
//! [`block_all`] first thing in `main`. Children get an empty mask and default
//! dispositions back in [`crate::spawn::configure_child`].
//!
//! The decision "what to do with signal N" is [`action`], a pure function,
//! so the reading loop stays small. [`SignalFd::read`] never blocks: the
//! caller polls the descriptor (`AsRawFd`) with everything else it waits on.
//!
//! The terminal hand-over does not go through here: the main command takes
//! the terminal itself (`setpgid` + `tcsetpgrp` in the child, never `setsid`
//! or `TIOCSCTTY`/`TIOCNOTTY` in ws-init), which makes the kernel send no
//! SIGHUP/SIGCONT to anyone. So every SIGHUP or SIGCONT ws-init reads was sent
//! on purpose and is forwarded (tests/pid1.rs checks the main command gets
//! neither when it starts on a terminal).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::spawn::set_signal_disposition;

/// The highest signal number on Linux (SIGRTMAX).
pub const SIGNAL_MAX: i32 = 64;

/// The kernel's signal set: bit N-1 is signal N (what `rt_sigprocmask` and
/// `signalfd4` take with a size of 8 bytes on every Linux architecture we
/// build for).
pub type KernelSigset = u64;

fn bit(sig: i32) -> KernelSigset {
    1 << (sig - 1)
}

/// Every signal a process can catch or block: 1..=64 except SIGKILL and
/// SIGSTOP. 32..=34 are included, which libc's `sigaddset` would refuse.
pub fn catchable() -> KernelSigset {
    (1..=SIGNAL_MAX)
        .filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
        .fold(0, |set, s| set | bit(s))
}

/// Whether `set` holds `sig`.
pub fn contains(set: KernelSigset, sig: i32) -> bool {
    (1..=SIGNAL_MAX).contains(&sig) && set & bit(sig) != 0
}

/// `rt_sigprocmask` itself: the libc wrappers silently drop 32..=34.
fn set_mask(how: libc::c_int, set: KernelSigset) -> io::Result<()> {
    // SAFETY: valid pointer to 8 bytes for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            &set as *const KernelSigset,
            std::ptr::null_mut::<KernelSigset>(),
            std::mem::size_of::<KernelSigset>(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks every catchable signal in the calling thread (and so in every
/// thread created after it), and gives SIGCHLD its default disposition: an
/// ignored SIGCHLD inherited from the parent would make the kernel reap
/// children itself, and their exit statuses would be lost. Call before any
/// thread exists.
pub fn block_all() -> io::Result<()> {
    set_mask(libc::SIG_SETMASK, catchable())?;
    if set_signal_disposition(libc::SIGCHLD, libc::SIG_DFL) != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unblocks every signal in the calling thread, by the raw system call (see
/// [`set_mask`]). Async-signal-safe: used between fork and exec.
pub fn clear_mask() {
    let _ = set_mask(libc::SIG_SETMASK, 0);
}

/// One signal as the signalfd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub signo: i32,
    /// The sender's pid as seen from our PID namespace; 0 for the kernel or a
    /// sender outside the namespace (`docker kill`, `docker stop`).
    pub sender: i32,
}

/// What ws-init does with a signal it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGCHLD: reap every child that ended.
    Reap,
    /// Send it on to the main command.
    Forward,
    /// SIGTSTP/SIGTTIN/SIGTTOU when ws-init is not PID 1: forward, then stop
    /// ws-init itself so the shell that started it sees the job stopped
    /// (SIGCONT later continues ws-init and is forwarded too).
    ForwardThenStop,
    /// Raised by ws-init itself (SIGPIPE or SIGXFSZ from one of its own
    /// writes, which then fails with an error it handles): not the user's.
    Drop,
}

/// What to do with signal `signo` from `sender`, when ws-init's own pid is
/// `own_pid` (1 when it is PID 1).
pub fn action(signo: i32, sender: i32, own_pid: i32) -> Action {
    if signo == libc::SIGCHLD {
        return Action::Reap;
    }
    if sender == own_pid {
        return Action::Drop;
    }
    match signo {
        libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU if own_pid != 1 => Action::ForwardThenStop,
        _ => Action::Forward,
    }
}

/// Whether the signal also starts the ordered stop of the workspace.
pub fn starts_stop(signo: i32) -> bool {
    signo == libc::SIGTERM || signo == libc::SIGINT
}

/// A signal's name for log lines: `SIGTERM`, `SIGRTMIN+3`, `signal 33`.
pub fn name(signo: i32) -> String {
    match known_name(signo) {
        Some(name) => name.to_string(),
        None => format!("signal {signo}"),
    }
}

/// The standard name of signals 1..=31 (as the kernel's headers spell
/// them); `None` for real-time signals and numbers that are no signal.
pub fn known_name(signo: i32) -> Option<&'static str> {
    Some(match signo {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

/// Stops ws-init itself (job control when it is not PID 1). Returns when
/// something sends SIGCONT.
pub fn stop_self() {
    // SAFETY: plain kill of our own process.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGSTOP);
    }
}

/// A non-blocking signalfd for every catchable signal. The signals must be
/// blocked ([`block_all`]), or they are delivered the normal way and never
/// show up here. Poll its descriptor for `POLLIN`, then [`SignalFd::read`]
/// until it returns `None`.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    pub fn open() -> io::Result<SignalFd> {
        let set = catchable();
        // SAFETY: `signalfd4` itself (glibc's wrapper would pass a sigset
        // built with its own sigaddset, which refuses 32..=34).
        let fd = unsafe {
            libc::syscall(
                libc::SYS_signalfd4,
                -1,
                &set as *const KernelSigset,
                std::mem::size_of::<KernelSigset>(),
                libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(SignalFd { fd })
    }

    /// The next pending signal; `None` when none is (it never waits).
    pub fn read(&self) -> io::Result<Option<Received>> {
        read_one(self.fd.as_raw_fd())
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Reads one `signalfd_siginfo`; `None` when nothing is pending.
fn read_one(fd: i32) -> io::Result<Option<Received>> {
    // SAFETY: a plain C struct for which all zeroes is valid.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: reading at most `size` bytes into `info`.
        let n = unsafe { libc::read(fd, &mut info as *mut _ as *mut libc::c_void, size) };
        if n == size as isize {
            return Ok(Some(Received {
                signo: info.ssi_signo as i32,
                sender: info.ssi_pid as i32,
            }));
        }
        if n >= 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short read from signalfd: {n} bytes"),
            ));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catchable_is_every_signal_but_kill_and_stop() {
        let set = catchable();
        for sig in 1..=SIGNAL_MAX {
            let want = sig != libc::SIGKILL && sig != libc::SIGSTOP;
            assert_eq!(contains(set, sig), want, "signal {sig}");
        }
        assert_eq!(set.count_ones(), 62);
        assert!(contains(set, 32) && contains(set, 33) && contains(set, 34));
        assert!(!contains(set, 0) && !contains(set, 65));
    }

    #[test]
    fn sigchld_reaps_and_everything_else_is_forwarded() {
        for own in [1, 4242] {
            assert_eq!(action(libc::SIGCHLD, 0, own), Action::Reap);
            assert_eq!(action(libc::SIGCHLD, own, own), Action::Reap);
            for sig in (1..=SIGNAL_MAX).filter(|&s| {
                ![
                    libc::SIGCHLD,
                    libc::SIGTSTP,
                    libc::SIGTTIN,
                    libc::SIGTTOU,
                    libc::SIGKILL,
                    libc::SIGSTOP,
                ]
                .contains(&s)
            }) {
                assert_eq!(action(sig, 0, own), Action::Forward, "{sig} as {own}");
                assert_eq!(action(sig, 77, own), Action::Forward, "{sig} as {own}");
            }
        }
    }

    #[test]
    fn job_control_stops_ws_init_only_when_it_is_not_pid1() {
        for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
            assert_eq!(action(sig, 0, 1), Action::Forward);
            assert_eq!(action(sig, 0, 4242), Action::ForwardThenStop);
            assert_eq!(action(sig, 99, 4242), Action::ForwardThenStop);
        }
        assert_eq!(action(libc::SIGCONT, 0, 4242), Action::Forward);
        assert_eq!(action(libc::SIGCONT, 0, 1), Action::Forward);
    }

    #[test]
    fn signals_ws_init_raised_itself_stay_here() {
        // SIGPIPE from a write of ours to a closed pipe names us as sender.
        assert_eq!(action(libc::SIGPIPE, 4242, 4242), Action::Drop);
        assert_eq!(action(libc::SIGXFSZ, 1, 1), Action::Drop);
        // The same signal from anyone else is the user's.
        assert_eq!(action(libc::SIGPIPE, 0, 1), Action::Forward);
        assert_eq!(action(libc::SIGPIPE, 1, 4242), Action::Forward);
    }

    #[test]
    fn only_term_and_int_start_the_stop() {
        let stopping: Vec<i32> = (1..=SIGNAL_MAX).filter(|&s| starts_stop(s)).collect();
        assert_eq!(stopping, [libc::SIGINT, libc::SIGTERM]);
    }

    #[test]
    fn names_cover_realtime_signals() {
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(libc::SIGIO), "SIGIO");
        assert_eq!(name(40), "signal 40");
        assert_eq!(name(0), "signal 0");
        let named = (1..=SIGNAL_MAX)
            .filter(|&s| known_name(s).is_some())
            .count();
        assert_eq!(named, 31);
    }

    /// A signal raised here while blocked comes out of the signalfd with
    /// our pid as sender; `read` returns `None` once none is left. Run in a
    /// thread of its own, which blocks the signal for itself only (a
    /// thread-directed `tgkill` is pending for that thread alone).
    #[test]
    fn a_blocked_signal_is_read_from_the_signalfd() {
        std::thread::spawn(|| {
            set_mask(libc::SIG_BLOCK, bit(libc::SIGUSR2)).unwrap();
            let fd = SignalFd::open().unwrap();
            // Whatever another test left pending for the whole process.
            while fd.read().unwrap().is_some() {}
            // SAFETY: plain tgkill of this very thread, whose SIGUSR2 is blocked.
            let r = unsafe {
                let tid = libc::syscall(libc::SYS_gettid);
                libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR2)
            };
            assert_eq!(r, 0);
            let mut got = Vec::new();
            while let Some(r) = fd.read().unwrap() {
                got.push(r);
            }
            let me = std::process::id() as i32;
            assert!(
                got.contains(&Received {
                    signo: libc::SIGUSR2,
                    sender: me,
                }),
                "{got:?}"
            );
        })
        .join()
        .unwrap();
    }
}
