//! The init core: spawning, the one and only `wait` caller, signal forwarding
//! and terminating what is left.
//!
//! Design §5 lessons applied here:
//! - exactly one place calls `waitpid`: [`Reaper`]. Processes ws-init starts
//!   itself are registered with it at spawn time (no await in between, and the
//!   runtime is single-threaded, so the reaper cannot see them first) and get
//!   their status through a channel; every other status is an orphan, reaped
//!   and counted.
//! - the reap loop drains `waitpid(-1, WNOHANG)` until nothing is left on
//!   every SIGCHLD, because SIGCHLDs coalesce.
//! - children start with default signal dispositions, an empty mask, no
//!   ws-init fds (std opens everything CLOEXEC) and the caller's cwd.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::exit::ChildExit;

/// Signals forwarded to the main command (the list).
pub const FORWARDED_SIGNALS: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

#[derive(Default)]
struct Table {
    waiting: HashMap<i32, oneshot::Sender<ChildExit>>,
    orphans_reaped: u64,
    has_children: bool,
}

/// The single owner of `waitpid`. Cheap to clone; current-thread only.
#[derive(Clone)]
pub struct Reaper {
    table: Rc<RefCell<Table>>,
    reaped: Rc<Notify>,
}

/// A process ws-init started and is waiting for.
pub struct Child {
    pid: i32,
    rx: Option<oneshot::Receiver<ChildExit>>,
    exit: Option<ChildExit>,
}

impl Child {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the process to end; safe to call again after it has.
    pub async fn wait(&mut self) -> ChildExit {
        if let Some(exit) = self.exit {
            return exit;
        }
        // Polled by reference so a `select!` that drops this future loses nothing.
        let rx = self
            .rx
            .as_mut()
            .expect("receiver present until exit is known");
        // The sender lives in the reaper's table until the status arrives; a
        // dropped sender would mean the reaper is gone, which ends the runtime.
        let exit = rx.await.unwrap_or(ChildExit::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false,
        });
        self.exit = Some(exit);
        self.rx = None;
        exit
    }

    /// The exit status if it is already known (does not wait).
    pub fn try_exit(&mut self) -> Option<ChildExit> {
        if self.exit.is_none() {
            if let Some(rx) = self.rx.as_mut() {
                if let Ok(exit) = rx.try_recv() {
                    self.exit = Some(exit);
                    self.rx = None;
                }
            }
        }
        self.exit
    }

    /// Sends a signal; a process that is already gone is not an error.
    pub fn signal(&mut self, sig: Signal) {
        if self.try_exit().is_none() {
            let _ = kill(Pid::from_raw(self.pid), sig);
        }
    }
}

impl Reaper {
    /// Installs the SIGCHLD handler and starts the reap loop as a local task.
    /// Must run inside a `LocalSet` on a runtime with signals enabled.
    pub fn start() -> io::Result<Reaper> {
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Reaper {
            table: Rc::new(RefCell::new(Table::default())),
            reaped: Rc::new(Notify::new()),
        };
        let task = reaper.clone();
        tokio::task::spawn_local(async move {
            loop {
                // Drain first: children may have ended before the handler existed.
                task.reap_all();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// Spawns `cmd` and registers it, so its status reaches the returned [`Child`].
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Child> {
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        // std's Child is dropped without waiting: the reaper owns the status.
        drop(child);
        let (tx, rx) = oneshot::channel();
        let mut table = self.table.borrow_mut();
        table.waiting.insert(pid, tx);
        table.has_children = true;
        Ok(Child {
            pid,
            rx: Some(rx),
            exit: None,
        })
    }

    /// Number of processes reaped that nobody was waiting for.
    pub fn orphans_reaped(&self) -> u64 {
        self.table.borrow().orphans_reaped
    }

    /// Reaps every child that has ended; routes registered ones to their waiter.
    pub fn reap_all(&self) {
        let mut table = self.table.borrow_mut();
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {
                    table.has_children = true;
                    break;
                }
                Ok(status) => {
                    if let Some((pid, exit)) = ChildExit::from_wait_status(status) {
                        match table.waiting.remove(&pid) {
                            Some(tx) => {
                                tracing::debug!(pid, %exit, "child ended");
                                let _ = tx.send(exit);
                            }
                            None => {
                                table.orphans_reaped += 1;
                                tracing::trace!(pid, %exit, "reaped orphan");
                            }
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => {
                    table.has_children = false;
                    break;
                }
                Err(e) => {
                    tracing::warn!("waitpid failed: {e}");
                    break;
                }
            }
        }
        drop(table);
        self.reaped.notify_waiters();
    }

    /// Whether any child (registered or orphan) is still alive, as of the last reap.
    pub fn has_children(&self) -> bool {
        self.table.borrow().has_children
    }

    /// Waits until no child is left, or the deadline passes. True if none is left.
    pub async fn wait_no_children(&self, deadline: Instant) -> bool {
        loop {
            self.reap_all();
            if !self.has_children() {
                return true;
            }
            // Created after reaping: a `Notified` counts every notify_waiters
            // from its creation on, so an earlier one would fire at once.
            // Single-threaded, nothing can be reaped between the two lines.
            let notified = self.reaped.notified();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.reap_all();
                return !self.has_children();
            }
        }
    }

    /// Signals every process left: the whole PID namespace when we are PID 1
    /// (`kill(-1)` spares only ourselves), else our descendants only, since
    /// `kill(-1)` outside a namespace would hit the whole machine.
    pub fn signal_remaining(&self, sig: Signal) -> usize {
        let me = std::process::id() as i32;
        if me == 1 {
            self.reap_all();
            if !self.has_children() {
                return 0;
            }
            match kill(Pid::from_raw(-1), sig) {
                Ok(()) => usize::MAX,
                Err(_) => 0,
            }
        } else {
            let pids = descendants(Path::new("/proc"), me);
            for pid in &pids {
                let _ = kill(Pid::from_raw(*pid), sig);
            }
            pids.len()
        }
    }

    /// SIGTERM to everything left, then SIGKILL at the deadline.
    pub async fn terminate_remaining(&self, deadline: Instant) {
        self.reap_all();
        if !self.has_children() {
            return;
        }
        self.signal_remaining(Signal::SIGTERM);
        if self.wait_no_children(deadline).await {
            return;
        }
        tracing::warn!("processes still running after the stop timeout: sending SIGKILL");
        self.signal_remaining(Signal::SIGKILL);
        // SIGKILL cannot be refused; a short bound only guards against D-state.
        self.wait_no_children(Instant::now() + Duration::from_secs(2))
            .await;
    }
}

/// PIDs of every descendant of `root`, read from `proc` (`/proc` in production).
pub fn descendants(proc: &Path, root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir(proc) {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
                if let Some(ppid) = parse_stat_ppid(&stat) {
                    parent_of.push((pid, ppid));
                }
            }
        }
    }
    descendants_of(&parent_of, root)
}

/// Pure: descendants of `root` in a (pid, ppid) list.
pub fn descendants_of(parent_of: &[(i32, i32)], root: i32) -> Vec<i32> {
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == p)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The parent PID from a `/proc/PID/stat` line. The command name may contain
/// spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Who the main command runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
    pub shell: String,
}

/// Prepares `cmd` to start as a clean child: its own process group (in the
/// foreground of the terminal, if stdin is one), default signal dispositions
/// and an empty mask, and, for a user other than root, that user's ids and
/// groups with every capability gone (setuid away from root clears the
/// permitted, effective and ambient sets).
pub fn configure_child(cmd: &mut Command, run_as: Option<&RunAs>, foreground_tty: bool) {
    if let Some(user) = run_as {
        cmd.env("HOME", &user.home)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name);
        if std::env::var_os("SHELL").is_none() && !user.shell.is_empty() {
            cmd.env("SHELL", &user.shell);
        }
    }
    let ids = run_as.map(|u| (u.uid, u.gid, u.groups.clone()));
    // SAFETY: the closure runs between fork and exec and only calls
    // async-signal-safe functions on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if foreground_tty {
                // We are a background group until tcsetpgrp succeeds, so
                // SIGTTOU must not stop us while we take the terminal.
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(0, libc::getpid());
            }
            // Every signal up to SIGRTMAX included, through the raw system
            // call: glibc's and musl's wrappers refuse the signals they keep
            // for themselves (32..=34), and those arrive ignored from a
            // parent that used glibc's posix_spawn.
            for sig in 1..=64 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    set_signal_disposition(sig, libc::SIG_DFL);
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if let Some((uid, gid, groups)) = &ids {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setresgid(*gid, *gid, *gid) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setresuid(*uid, *uid, *uid) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The kernel's `struct sigaction` (x86_64, aarch64): the raw system call
/// takes this layout, not libc's. Other architectures differ (no `restorer`
/// on riscv64, `flags` first on mips, a 128-bit mask on 32-bit ones), so they
/// get a build error rather than a wrong layout.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!(
    "KernelSigaction in src/pid1.rs has the kernel's struct sigaction layout of x86_64 and \
     aarch64 only: add this architecture's layout (see arch/*/include/uapi/asm/signal.h)"
);
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Sets `sig`'s disposition (`SIG_DFL`, `SIG_IGN`) by `rt_sigaction` itself:
/// the libc wrappers refuse the signals glibc and musl keep for themselves
/// (32..=34). Async-signal-safe. Returns the system call's result (0 = done).
pub fn set_signal_disposition(sig: i32, handler: libc::sighandler_t) -> i32 {
    let act = KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: a valid struct for the duration of the call, no old action asked.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &act as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            std::mem::size_of::<u64>(),
        ) as i32
    }
}

/// Unblocks every signal in ws-init itself: a mask inherited from the parent
/// survives exec, and a blocked SIGTERM would never reach the handlers.
/// Call before the runtime starts any thread.
pub fn clear_inherited_signal_mask() -> io::Result<()> {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(io::Error::from)
}

/// Whether fd 0 is a terminal we can hand to the main command.
pub fn stdin_is_tty() -> bool {
    nix::unistd::isatty(0).unwrap_or(false)
}

/// Become a child subreaper when not PID 1, so orphans still come to us.
pub fn become_subreaper_if_needed() -> io::Result<bool> {
    if std::process::id() == 1 {
        return Ok(false);
    }
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Streams of the signals ws-init handles; created before anything is spawned
/// so no signal is lost in between.
pub struct SignalStreams {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl SignalStreams {
    pub fn install() -> io::Result<SignalStreams> {
        let mut streams = Vec::new();
        for sig in FORWARDED_SIGNALS {
            streams.push((sig, signal(SignalKind::from_raw(sig as i32))?));
        }
        Ok(SignalStreams { streams })
    }

    /// The next signal received, of any of the handled kinds.
    pub async fn recv(&mut self) -> Signal {
        let polls = self.streams.iter_mut().map(|(sig, stream)| {
            let sig = *sig;
            Box::pin(async move {
                stream.recv().await;
                sig
            })
        });
        futures_select_all(polls).await
    }
}

/// Minimal select over a list of futures (avoids a dependency on `futures`).
async fn futures_select_all<F: std::future::Future<Output = Signal> + Unpin>(
    futs: impl Iterator<Item = F>,
) -> Signal {
    let mut futs: Vec<F> = futs.collect();
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ppid_survives_odd_command_names() {
        assert_eq!(parse_stat_ppid("123 (sleep) S 45 123 45 0"), Some(45));
        assert_eq!(parse_stat_ppid("7 (a) b) (c) R 1 7 7 0"), Some(1));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn descendants_walks_the_whole_tree_only() {
        let table = [(10, 1), (11, 10), (12, 11), (13, 10), (20, 1), (21, 20)];
        let mut d = descendants_of(&table, 10);
        d.sort();
        assert_eq!(d, vec![11, 12, 13]);
        assert!(descendants_of(&table, 12).is_empty());
    }

    #[test]
    fn descendants_of_this_process_finds_a_real_child() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let me = std::process::id() as i32;
        let found = descendants(Path::new("/proc"), me);
        assert!(found.contains(&(child.id() as i32)), "{found:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
