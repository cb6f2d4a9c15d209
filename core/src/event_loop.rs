//! The one poll loop PID 1 (and start-docker's supervisor) runs: the
//! signalfd, the dockerd supervisor, the DNS forwarder and a helper's output
//! being read, all served from [`Core::turn`]. Every wait of the flows runs
//! [`Core::wait_until`], which keeps reaping, copying dockerd's output,
//! answering DNS and collecting signals while it waits.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::dns::{Config as DnsConfig, Forwarder};
use crate::exit::ChildExit;
use crate::fd::{self, Read};
use crate::handover::Handover;
use crate::reactor::{earliest, Interest};
use crate::reaper::Children;
use crate::signals::{self, Action, SignalFd};
use crate::supervisor::{Spec, Supervisor};

/// How often a wait on processes that are not our children looks again.
pub const NOT_OURS_POLL: Duration = Duration::from_millis(50);

/// A signal for the flow, with what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    pub signo: i32,
    pub action: Action,
}

/// A pipe read to its end by the loop, and what came so far.
pub(crate) struct Reading {
    pub pipe: OwnedFd,
    pub text: Vec<u8>,
    /// The writer closed it (or reading failed): `text` is all there is.
    pub done: bool,
}

impl Reading {
    /// Reads what the (nonblocking) pipe has now.
    fn take_available(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match fd::read(self.pipe.as_raw_fd(), &mut chunk) {
                Ok(Read::Data(n)) => self.text.extend_from_slice(&chunk[..n]),
                Ok(Read::Empty) => return,
                Ok(Read::End) | Err(_) => {
                    self.done = true;
                    return;
                }
            }
        }
    }
}

/// Everything PID 1 keeps running, and the poll loop over it.
pub struct Core {
    sigfd: SignalFd,
    own_pid: i32,
    pub children: Children,
    inbox: VecDeque<Incoming>,
    pub dockerd: Option<Supervisor>,
    pub dns: Option<Forwarder>,
    /// Output of a helper being read to its end (the handover).
    pub(crate) reading: Option<Reading>,
    interest: Interest,
}

impl Core {
    pub fn new(sigfd: SignalFd) -> Core {
        let mut core = Core {
            sigfd,
            own_pid: std::process::id() as i32,
            children: Children::default(),
            inbox: VecDeque::new(),
            dockerd: None,
            dns: None,
            reading: None,
            interest: Interest::default(),
        };
        // Children may have ended before the descriptor existed.
        core.children.reap_all();
        core
    }

    /// One turn of the loop: waits until something is ready or `deadline`,
    /// then serves it.
    pub(crate) fn turn(&mut self, deadline: Option<Instant>) {
        let fd = self.sigfd.as_raw_fd();
        self.interest.clear();
        self.interest.read(fd);
        let mut due = deadline;
        if let Some(r) = &self.reading {
            self.interest.read(r.pipe.as_raw_fd());
        }
        if let Some(d) = &self.dockerd {
            d.register(&mut self.interest);
            due = earliest(due, d.deadline());
        }
        if let Some(f) = &self.dns {
            f.register(Instant::now(), &mut self.interest);
            due = earliest(due, f.deadline());
        }
        if let Err(e) = self.interest.poll(due) {
            // Not expected; keep going at a slow pace rather than spin.
            error!("poll failed: {e}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let now = Instant::now();
        if self.interest.readable(fd) {
            self.read_signals();
        }
        if let Some(r) = self.reading.as_mut() {
            if self.interest.readable(r.pipe.as_raw_fd()) {
                r.take_available();
            }
        }
        if let Some(d) = self.dockerd.as_mut() {
            d.service(&self.interest, &mut self.children, now);
        }
        if let Some(f) = self.dns.as_mut() {
            f.service(&self.interest, now);
        }
    }

    fn read_signals(&mut self) {
        loop {
            match self.sigfd.read() {
                Ok(Some(r)) => match signals::action(r.signo, r.sender, self.own_pid) {
                    Action::Reap => self.children.reap_all(),
                    Action::Drop => trace!(
                        "{} raised by ws-init itself: not forwarded",
                        signals::name(r.signo)
                    ),
                    action => self.inbox.push_back(Incoming {
                        signo: r.signo,
                        action,
                    }),
                },
                Ok(None) => return,
                Err(e) => {
                    // Not expected: reap anyway so the workspace lives on.
                    error!("cannot read signals: {e}");
                    self.children.reap_all();
                    return;
                }
            }
        }
    }

    /// Runs the loop until `done` holds (checked after every turn) or
    /// `deadline` passes; true if `done` held. `done` also consumes the
    /// signals that arrived ([`Core::next_signal`]).
    pub fn wait_until(
        &mut self,
        deadline: Option<Instant>,
        done: impl FnMut(&mut Core) -> bool,
    ) -> bool {
        self.wait(deadline, None, done)
    }

    /// As [`Core::wait_until`], for a condition no event announces
    /// (processes that are not our children end without a SIGCHLD to us):
    /// also checked every `period`.
    pub fn wait_polling(
        &mut self,
        deadline: Option<Instant>,
        period: Duration,
        done: impl FnMut(&mut Core) -> bool,
    ) -> bool {
        self.wait(deadline, Some(period), done)
    }

    fn wait(
        &mut self,
        deadline: Option<Instant>,
        period: Option<Duration>,
        mut done: impl FnMut(&mut Core) -> bool,
    ) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            self.turn(earliest(deadline, period.map(|p| now + p)));
        }
    }

    pub fn next_signal(&mut self) -> Option<Incoming> {
        self.inbox.pop_front()
    }

    /// Waits for a registered child's exit until `deadline`.
    pub(crate) fn wait_child(&mut self, pid: i32, deadline: Option<Instant>) -> Option<ChildExit> {
        let mut exit = None;
        self.wait_until(deadline, |c| {
            exit = c.children.take_exit(pid);
            exit.is_some()
        });
        exit
    }

    /// Waits until nothing but us is left, checking every 50 ms for the
    /// processes that are not our children. True if nothing is left.
    pub(crate) fn wait_nothing_left(&mut self, deadline: Instant) -> bool {
        self.wait_polling(Some(deadline), NOT_OURS_POLL, |c| c.children.nothing_left())
    }
}

/// Starts the DNS forwarder and dockerd as handed over. Returns whether
/// dockerd is supervised.
pub fn start_docker(core: &mut Core, h: &mut Handover) -> bool {
    let Some(mut d) = h.dockerd.take() else {
        return false;
    };
    // The forwarder listens before dockerd hands its address out.
    if let Some(dns) = &h.dns {
        let cfg = DnsConfig::new(dns.listen, dns.upstreams.clone());
        let (forwarder, args) = crate::dns::start_planned(cfg, &d.args, &dns.dockerd_args);
        core.dns = forwarder;
        d.args = args;
    }
    if d.run_as.is_none() {
        info!("starting dockerd {}", d.args.join(" "));
    }
    core.dockerd = Some(Supervisor::start(Spec::new(d, h.stop_timeout)));
    true
}
