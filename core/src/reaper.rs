//! The one and only `waitpid` caller (design §5): processes ws-init starts
//! are registered at spawn time and their status is kept for their owner;
//! every other status is an orphan, reaped and counted. Reaping drains
//! `waitpid(-1, WNOHANG)` on every SIGCHLD, because SIGCHLDs coalesce.

use std::io;
use std::path::Path;
use std::process::Command;

use crate::exit::ChildExit;
use crate::pid1::whole_namespace;
use crate::procs;

#[derive(Debug, Default)]
pub struct Children {
    /// Registered children: pid and, once reaped, how it ended.
    registered: Vec<(i32, Option<ChildExit>)>,
    orphans_reaped: u64,
    has_children: bool,
}

impl Children {
    /// Spawns `cmd` and registers it; its status is kept until taken.
    pub fn spawn(&mut self, cmd: &mut Command) -> io::Result<i32> {
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        // std's Child is dropped without waiting: the status is ours.
        drop(child);
        self.registered.push((pid, None));
        self.has_children = true;
        Ok(pid)
    }

    /// Reaps every child that has ended.
    pub fn reap_all(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: plain waitpid on any child, without blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == 0 {
                self.has_children = true;
                return;
            }
            if pid < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ECHILD) => self.has_children = false,
                    _ => warn!("waitpid failed: {}", io::Error::last_os_error()),
                }
                return;
            }
            let Some(exit) = ChildExit::from_raw_wait_status(status) else {
                continue;
            };
            match self
                .registered
                .iter_mut()
                .find(|(p, e)| *p == pid && e.is_none())
            {
                Some(entry) => {
                    debug!("child {pid} ended: {exit}");
                    entry.1 = Some(exit);
                }
                None => {
                    self.orphans_reaped += 1;
                    trace!("reaped orphan {pid}: {exit}");
                }
            }
        }
    }

    /// The exit of a registered child, if it has ended (kept until taken).
    pub fn exit_of(&self, pid: i32) -> Option<ChildExit> {
        self.registered
            .iter()
            .find(|(p, _)| *p == pid)
            .and_then(|(_, e)| *e)
    }

    /// Takes the exit of a registered child that has ended, forgetting it.
    pub fn take_exit(&mut self, pid: i32) -> Option<ChildExit> {
        let i = self
            .registered
            .iter()
            .position(|(p, e)| *p == pid && e.is_some())?;
        self.registered.swap_remove(i).1
    }

    /// Signals a registered child unless it has been reaped already (its
    /// pid could be reused then). Gone already is not an error.
    pub fn signal(&self, pid: i32, signo: i32) {
        if self
            .registered
            .iter()
            .any(|(p, e)| *p == pid && e.is_none())
        {
            // SAFETY: plain kill of a child of ours not reaped yet.
            unsafe {
                libc::kill(pid, signo);
            }
        }
    }

    pub fn orphans_reaped(&self) -> u64 {
        self.orphans_reaped
    }

    /// Whether nothing but ws-init is left: no child, and as PID 1 with our
    /// own `/proc`, no other live process in the namespace either (those
    /// entered with `docker exec` are not our children).
    pub fn nothing_left(&mut self) -> bool {
        self.reap_all();
        if self.has_children {
            return false;
        }
        match whole_namespace() {
            Some(me) => procs::others(&procs::read_table(Path::new("/proc")), me).is_empty(),
            None => true,
        }
    }

    /// As PID 1: sends `signo` to every process that entered the namespace
    /// from outside (`docker exec`), with its children. Returns their pids
    /// (none when not PID 1).
    pub fn signal_outsiders(&self, signo: i32) -> Vec<i32> {
        let Some(me) = whole_namespace() else {
            return Vec::new();
        };
        let pids = procs::outsiders(&procs::read_table(Path::new("/proc")), me);
        for pid in &pids {
            // SAFETY: plain kill; a pid just read from our own namespace.
            unsafe {
                libc::kill(*pid, signo);
            }
        }
        pids
    }

    /// Signals every process left: the whole PID namespace as PID 1
    /// (`kill(-1)` spares only ourselves), else our descendants only, since
    /// `kill(-1)` outside a namespace would hit the whole machine.
    pub fn signal_remaining(&mut self, signo: i32) {
        let me = std::process::id() as i32;
        if me == 1 {
            if !self.nothing_left() {
                // SAFETY: kill(-1) as PID 1 reaches our namespace only.
                unsafe {
                    libc::kill(-1, signo);
                }
            }
        } else {
            for pid in procs::descendants(Path::new("/proc"), me) {
                // SAFETY: plain kill of one of our descendants.
                unsafe {
                    libc::kill(pid, signo);
                }
            }
        }
    }
}

/// Whether `pids` are all gone (not alive in `/proc`).
pub fn all_gone(pids: &[i32]) -> bool {
    !procs::read_table(Path::new("/proc"))
        .iter()
        .any(|p| p.alive() && pids.contains(&p.pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_child_keeps_its_status_until_taken() {
        let _children = crate::test_support::children_lock();
        let mut c = Children::default();
        let pid = c.spawn(Command::new("sh").args(["-c", "exit 7"])).unwrap();
        let t = std::time::Instant::now();
        while c.exit_of(pid).is_none() {
            assert!(t.elapsed().as_secs() < 5);
            std::thread::sleep(std::time::Duration::from_millis(5));
            c.reap_all();
        }
        assert_eq!(c.exit_of(pid), Some(ChildExit::Exited(7)));
        assert_eq!(c.take_exit(pid), Some(ChildExit::Exited(7)));
        assert_eq!(c.take_exit(pid), None);
    }
}
