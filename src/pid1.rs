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
//! - signals are read from a signalfd ([`signals`]); SIGCHLD drives the
//!   reaper, every other catchable signal goes to the lead through an
//!   [`Inbox`].

pub mod procs;
pub mod signals;

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
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::exit::ChildExit;
pub use procs::{descendants, descendants_of, parse_stat_ppid};
use signals::{Action, SignalFd};

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
        self.signal_number(sig as i32);
    }

    /// Sends signal number `signo` (real-time ones included). No await
    /// between the check and the kill: on this single-threaded runtime the
    /// reaper cannot reap the pid (which could then be reused) in between.
    pub fn signal_number(&mut self, signo: i32) {
        if self.try_exit().is_none() {
            // SAFETY: plain kill; a pid of ours that is not reaped yet.
            unsafe {
                libc::kill(self.pid, signo);
            }
        }
    }
}

/// A signal for the lead, with what to do about it ([`signals::action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    pub signo: i32,
    pub action: Action,
}

/// The signals other than SIGCHLD, in the order they arrived.
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<Incoming>,
}

impl Inbox {
    /// The next signal; never resolves if the reading task is gone.
    pub async fn recv(&mut self) -> Incoming {
        match self.rx.recv().await {
            Some(sig) => sig,
            None => std::future::pending().await,
        }
    }
}

impl Reaper {
    fn new() -> Reaper {
        Reaper {
            table: Rc::new(RefCell::new(Table::default())),
            reaped: Rc::new(Notify::new()),
        }
    }

    /// ws-init's core: one local task reads `sigfd` (every catchable signal,
    /// blocked by [`signals::block_all`]), reaps on SIGCHLD and hands every
    /// other signal to the returned [`Inbox`]. Must run inside a `LocalSet`.
    pub fn start_with_signals(sigfd: SignalFd) -> (Reaper, Inbox) {
        let reaper = Reaper::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = reaper.clone();
        let own_pid = std::process::id() as i32;
        tokio::task::spawn_local(async move {
            // Children may have ended before the descriptor existed.
            task.reap_all();
            loop {
                match sigfd.recv().await {
                    Ok(r) => match signals::action(r.signo, r.sender, own_pid) {
                        Action::Reap => task.reap_all(),
                        Action::Drop => tracing::trace!(
                            "{} raised by ws-init itself: not forwarded",
                            signals::name(r.signo)
                        ),
                        action => {
                            let _ = tx.send(Incoming {
                                signo: r.signo,
                                action,
                            });
                        }
                    },
                    Err(e) => {
                        // Not expected; keep reaping so the workspace lives on.
                        tracing::error!("cannot read signals: {e}; reaping every 100 ms instead, signals are no longer forwarded");
                        loop {
                            task.reap_all();
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        });
        (reaper, Inbox { rx })
    }

    /// A reaper driven by a SIGCHLD handler, for a process that does not
    /// block its signals (tests that embed the supervisor). Must run inside
    /// a `LocalSet` on a runtime with signals enabled.
    pub fn start() -> io::Result<Reaper> {
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let reaper = Reaper::new();
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

    /// Whether nothing but ws-init is left: no child, and as PID 1 with our
    /// own `/proc`, no other live process in the namespace either (those
    /// entered with `docker exec` are not our children).
    pub fn nothing_left(&self) -> bool {
        self.reap_all();
        if self.has_children() {
            return false;
        }
        match whole_namespace() {
            Some(me) => procs::others(&procs::read_table(Path::new("/proc")), me).is_empty(),
            None => true,
        }
    }

    /// Waits until `done` holds (checked after every reap, and every 50 ms
    /// for processes that are not our children), or the deadline passes.
    /// Returns whether it held.
    async fn wait_until(&self, deadline: Instant, mut done: impl FnMut(&Reaper) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            // Created after checking: a `Notified` counts every notify_waiters
            // from its creation on. Single-threaded, nothing is reaped between.
            let notified = self.reaped.notified();
            let poll = (Instant::now() + Duration::from_millis(50)).min(deadline);
            let _ = tokio::time::timeout_at(poll, notified).await;
        }
    }

    /// Waits until nothing is left ([`Reaper::nothing_left`]), or the
    /// deadline passes. True if nothing is left.
    pub async fn wait_nothing_left(&self, deadline: Instant) -> bool {
        self.wait_until(deadline, Reaper::nothing_left).await
    }

    /// As PID 1: sends `sig` to every process that entered the namespace
    /// from outside (`docker exec`), with its children. They are not in our
    /// tree, so without this they would get nothing before the kernel's
    /// SIGKILL when PID 1 exits. Returns their pids (none when not PID 1).
    pub fn signal_outsiders(&self, sig: Signal) -> Vec<i32> {
        let Some(me) = whole_namespace() else {
            return Vec::new();
        };
        let pids = procs::outsiders(&procs::read_table(Path::new("/proc")), me);
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), sig);
        }
        pids
    }

    /// Waits until none of `pids` is alive any more, or the deadline passes.
    pub async fn wait_gone(&self, pids: &[i32], deadline: Instant) -> bool {
        self.wait_until(deadline, |_| {
            let table = procs::read_table(Path::new("/proc"));
            !table.iter().any(|p| p.alive() && pids.contains(&p.pid))
        })
        .await
    }

    /// Signals every process left: the whole PID namespace when we are PID 1
    /// (`kill(-1)` spares only ourselves), else our descendants only, since
    /// `kill(-1)` outside a namespace would hit the whole machine.
    pub fn signal_remaining(&self, sig: Signal) -> usize {
        let me = std::process::id() as i32;
        if me == 1 {
            if self.nothing_left() {
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

    /// SIGTERM to everything left, then SIGKILL at the deadline. Returns
    /// when nothing is left (never earlier), or shortly after the SIGKILL.
    pub async fn terminate_remaining(&self, deadline: Instant) {
        if self.nothing_left() {
            return;
        }
        self.signal_remaining(Signal::SIGTERM);
        if self.wait_nothing_left(deadline).await {
            return;
        }
        tracing::warn!("processes still running after the stop timeout: sending SIGKILL");
        self.signal_remaining(Signal::SIGKILL);
        // SIGKILL cannot be refused; a short bound only guards against D-state.
        self.wait_nothing_left(Instant::now() + Duration::from_secs(2))
            .await;
    }
}

/// Our pid when we are PID 1 and `/proc` is our namespace's, so that every
/// process in it is ours to see and signal; `None` otherwise.
fn whole_namespace() -> Option<i32> {
    (std::process::id() == 1 && procs::proc_is_ours(Path::new("/proc"))).then_some(1)
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
            // ws-init blocks every signal (32..=34 included, which libc's
            // sigprocmask would keep): the raw system call clears them all.
            signals::clear_mask();
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
