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

mod signalfd;

/// The signals' core ([`ws_init_core::signals`]), with the runtime's
/// asynchronous [`SignalFd`](signalfd::SignalFd) in place of the core's
/// non-blocking one.
pub mod signals {
    pub use super::signalfd::SignalFd;
    pub use ws_init_core::signals::*;
}

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::exit::ChildExit;
use signals::{Action, SignalFd};
use ws_init_core::pid1::whole_namespace;
pub use ws_init_core::pid1::{become_subreaper_if_needed, stdin_is_tty};
pub use ws_init_core::procs::{self, descendants, descendants_of, parse_stat_ppid};
pub use ws_init_core::spawn::{configure_child, set_signal_disposition, RunAs};

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
            let mut status = 0;
            // SAFETY: waitpid writes one int through the pointer it is given.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == 0 {
                table.has_children = true;
                break;
            }
            if pid < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ECHILD) => table.has_children = false,
                    _ => tracing::warn!("waitpid failed: {e}"),
                }
                break;
            }
            let Some(exit) = ChildExit::from_raw_wait_status(status) else {
                continue;
            };
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
