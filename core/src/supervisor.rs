//! The dockerd supervisor's effects: spawn dockerd with its output copied
//! into the log, probe `/_ping`, signal it, keep the one timer. What to do
//! next is decided by the pure [`machine`]; this driver performs its actions
//! and turns what the poll loop sees (the exit, the probe's answer, the stop
//! request, the timer) into its events. dockerd dying never ends anything
//! else: the driver only reports states.

use std::io;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::backoff::BackoffPolicy;
use crate::exit::ChildExit;
use crate::handover::Dockerd;
use crate::logs::{self, EchoFilter, LogFile, LogPipes, LogSink};
use crate::ping::Probe;
use crate::reactor::{after, earliest, Interest};
use crate::reaper::Children;
use crate::spawn::configure_child;
use crate::supervise::machine::{self, Action, Event, Machine, Message, Policy, Timer};
use crate::supervise::State;

/// How to run and supervise dockerd.
pub struct Spec {
    /// The program, its arguments, socket, log and user, as handed over.
    pub dockerd: Dockerd,
    /// From SIGTERM to SIGKILL when stopping.
    pub stop_timeout: Duration,
    /// Stale pid files under /run are removed before every start (a pid
    /// file left by an unclean stop makes dockerd refuse to start); not for
    /// a rootless dockerd, whose files live where its user can write.
    pub clear_stale_pid_files: bool,
    pub backoff: BackoffPolicy,
    /// A start that has not answered `/_ping` after this long is reported
    /// (and reported again each period); dockerd is left to carry on.
    pub ready_warn_after: Duration,
}

impl Spec {
    /// The production policy for `dockerd`.
    pub fn new(dockerd: Dockerd, stop_timeout: Duration) -> Spec {
        Spec {
            clear_stale_pid_files: dockerd.run_as.is_none(),
            dockerd,
            stop_timeout,
            backoff: BackoffPolicy::default(),
            ready_warn_after: Duration::from_secs(30),
        }
    }
}

/// The supervised dockerd.
pub struct Supervisor {
    spec: Spec,
    machine: Machine,
    /// Actions not performed yet (performed at the next `service`).
    pending: Vec<Action>,
    sink: LogSink,
    /// Output pipes still open: dockerd's, and those of earlier runs that
    /// processes it started (containerd) still hold.
    pumps: Vec<LogPipes>,
    pid: Option<i32>,
    probe: Option<Probe>,
    timer: Option<(Instant, Timer)>,
    stop_requested: bool,
    stop_fed: bool,
    state: State,
    last_exit: Option<ChildExit>,
    finished: bool,
}

impl Supervisor {
    /// Starts supervising; the first spawn happens at the first `service`.
    pub fn start(spec: Spec) -> Supervisor {
        let policy = Policy {
            backoff: spec.backoff,
            stop_timeout: spec.stop_timeout,
            ready_warn_after: spec.ready_warn_after,
        };
        let (machine, pending) = Machine::start(policy);
        let sink = LogSink::new(
            LogFile::open(
                &spec.dockerd.log_path,
                spec.dockerd.log_max_bytes,
                spec.dockerd.log_gid,
            ),
            EchoFilter::default(),
        );
        Supervisor {
            spec,
            machine,
            pending,
            sink,
            pumps: Vec::new(),
            pid: None,
            probe: None,
            timer: None,
            stop_requested: false,
            stop_fed: false,
            state: State::Starting {
                pid: None,
                attempt: 0,
            },
            last_exit: None,
            finished: false,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// How the last dockerd ended, if known.
    pub fn last_exit(&self) -> Option<ChildExit> {
        self.last_exit
    }

    /// dockerd's own `--shutdown-timeout`, if its command line sets one.
    pub fn shutdown_timeout(&self) -> Option<Duration> {
        self.spec.dockerd.shutdown_timeout
    }

    /// Nothing more will happen (stopped, or cannot start at all).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The first start's outcome, once there is one: dockerd answers (its
    /// pid), or why not.
    pub fn first_start(&self) -> Option<Result<i32, String>> {
        match &self.state {
            State::Starting { .. } => None,
            State::Ready { pid } => Some(Ok(*pid)),
            State::Failed { reason } => Some(Err(format!("dockerd cannot start ({reason})"))),
            State::Restarting { .. } => Some(Err(match self.last_exit {
                Some(exit) => {
                    format!("dockerd {exit} before it answered; it is restarted in the background")
                }
                None => "dockerd failed to start; it is retried in the background".to_string(),
            })),
            State::Stopped => Some(Err("dockerd was stopped".to_string())),
        }
    }

    /// Asks for the stop: SIGTERM (dockerd stops its containers), SIGKILL
    /// after the stop timeout. Takes effect at the next `service`.
    pub fn request_stop(&mut self) {
        self.stop_requested = true;
    }

    pub fn register(&self, interest: &mut Interest) {
        for p in &self.pumps {
            p.register(interest);
        }
        if let Some(probe) = &self.probe {
            probe.register(interest);
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        // Finished: nothing is armed any more (a stale timer or an unfed
        // stop request would otherwise keep the loop awake forever).
        if self.finished {
            return None;
        }
        let mut d = self.timer.map(|(at, _)| at);
        d = earliest(d, self.probe.as_ref().and_then(Probe::deadline));
        if !self.pending.is_empty() || (self.stop_requested && !self.stop_fed) {
            d = Some(Instant::now());
        }
        d
    }

    /// Copies output, then feeds the machine what happened and performs its
    /// actions until it waits for something again.
    pub fn service(&mut self, interest: &Interest, children: &mut Children, now: Instant) {
        for p in &mut self.pumps {
            p.service(interest, &mut self.sink, now);
        }
        self.pumps.retain(|p| !p.is_closed());
        loop {
            let actions = std::mem::take(&mut self.pending);
            let mut events = Vec::new();
            for action in actions {
                if self.finished {
                    break;
                }
                self.perform(action, children, &mut events);
            }
            if self.finished {
                return;
            }
            let event = match events.pop() {
                Some(e) => Some(e),
                None => self.next_event(interest, children, Instant::now()),
            };
            let Some(event) = event else { return };
            let (machine, actions) = machine::next(&self.machine, event);
            self.machine = machine;
            self.pending = actions;
        }
    }

    /// What happened, in the order the machine wants ties broken: an exit
    /// before a stop request, both before readiness and timers.
    fn next_event(
        &mut self,
        interest: &Interest,
        children: &mut Children,
        now: Instant,
    ) -> Option<Event> {
        if let Some(pid) = self.pid {
            if let Some(exit) = children.take_exit(pid) {
                self.pid = None;
                self.probe = None;
                return Some(Event::Exited { exit, now });
            }
        }
        if self.stop_requested && !self.stop_fed {
            self.stop_fed = true;
            return Some(Event::StopRequested);
        }
        if let Some(probe) = self.probe.as_mut() {
            if let Some(outcome) = probe.service(interest, now) {
                self.probe = None;
                return Some(match outcome {
                    Ok(()) => Event::Ready { now },
                    Err(error) => Event::ReadyTimeout { error, now },
                });
            }
        }
        if let Some((at, timer)) = self.timer {
            if now >= at {
                self.timer = None;
                return Some(Event::Timer(timer));
            }
        }
        None
    }

    fn perform(&mut self, action: Action, children: &mut Children, events: &mut Vec<Event>) {
        match action {
            Action::Spawn => {
                self.remove_stale_files();
                self.probe = None;
                events.push(match self.spawn(children) {
                    Ok(pid) => {
                        self.pid = Some(pid);
                        Event::Started {
                            pid,
                            now: Instant::now(),
                        }
                    }
                    Err(e) => {
                        let reason = format!("{}: {e}", self.spec.dockerd.program.display());
                        self.sink.note(&format!("cannot start dockerd: {reason}"));
                        Event::SpawnFailed {
                            reason,
                            fatal: matches!(
                                e.kind(),
                                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                            ),
                            now: Instant::now(),
                        }
                    }
                });
            }
            Action::ProbeReady => {
                self.probe = Some(Probe::new(
                    &self.spec.dockerd.socket,
                    Instant::now(),
                    self.spec.ready_warn_after,
                ));
            }
            Action::Signal(signo) => {
                if let Some(pid) = self.pid {
                    children.signal(pid, signo);
                }
            }
            Action::Arm(timer, delay) => {
                self.timer = Some((after(Instant::now(), delay), timer));
            }
            Action::Report(state) => self.state = state,
            Action::RecordExit(exit) => self.last_exit = exit,
            Action::Log(message) => self.log(message),
            Action::Finish => {
                // The stop or restart timer armed before is moot now.
                self.finished = true;
                self.timer = None;
                self.probe = None;
            }
        }
    }

    fn endpoint(&self) -> String {
        format!("unix://{}", self.spec.dockerd.socket.display())
    }

    fn log(&mut self, message: Message) {
        let endpoint = self.endpoint();
        let log_path = self.spec.dockerd.log_path.display().to_string();
        match message {
            Message::SpawnFailed { reason } => error!("cannot start dockerd ({reason})"),
            Message::GaveUp { reason } => error!(
                "cannot start dockerd ({reason}); Docker stays unavailable in this workspace"
            ),
            Message::DiedBeforeReady { exit } => {
                error!("dockerd {exit} before it answered on {endpoint}; see {log_path} for why")
            }
            Message::Restarting {
                exit,
                up,
                delay,
                attempt,
            } => {
                warn!(
                    "dockerd {exit} after {:.1} s; restarting in {delay:?} (restart {attempt}; its log: {log_path})",
                    up.as_secs_f64(),
                );
                self.sink
                    .note(&format!("dockerd {exit}; restarting in {delay:?}"));
            }
            Message::Ready { pid, after } => {
                let ms = after.as_millis();
                info!("dockerd ready after {ms} ms (pid {pid}, {endpoint})");
                self.sink
                    .note(&format!("dockerd answers on {endpoint} after {ms} ms"));
            }
            Message::NotAnswering { pid, waited, error } => warn!(
                "dockerd (pid {pid}) not answering after {:.0} s: {error}; still waiting",
                waited.as_secs_f64(),
            ),
            Message::Stopping { pid } => info!("stopping dockerd (pid {pid})"),
            Message::Killing { pid } => warn!(
                "dockerd (pid {pid}) still running {:.1} s after SIGTERM: sending SIGKILL",
                self.spec.stop_timeout.as_secs_f64()
            ),
            Message::StoppedAs { exit } => {
                info!("dockerd {exit}");
                self.sink.note(&format!("dockerd stopped: {exit}"));
            }
            Message::KillIgnored { pid } => {
                error!("dockerd (pid {pid}) did not end after SIGKILL")
            }
        }
    }

    /// Clears what an unclean stop leaves behind.
    fn remove_stale_files(&self) {
        if !self.spec.clear_stale_pid_files {
            return;
        }
        let (removed, failed) = crate::pidfiles::remove_stale();
        for path in removed {
            debug!("removed stale {}", path.display());
        }
        if let Some((path, e)) = failed {
            warn!(
                "cannot remove the stale pid file {}: {e}; dockerd may refuse to start",
                path.display()
            );
        }
    }

    /// Spawns dockerd with stdout and stderr on pipes read into the log.
    fn spawn(&mut self, children: &mut Children) -> io::Result<i32> {
        // Read from before the spawn: a dockerd whose output nobody reads
        // would die of SIGPIPE on its first log line.
        let (pump, output) = logs::pipes_for_child()?;
        let mut cmd = Command::new(&self.spec.dockerd.program);
        cmd.args(&self.spec.dockerd.args)
            .envs(self.spec.dockerd.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(output.stdout))
            .stderr(Stdio::from(output.stderr));
        configure_child(&mut cmd, self.spec.dockerd.run_as.as_ref(), false);
        let pid = children.spawn(&mut cmd)?;
        // The Command holds our copies of the write end: without dropping
        // it, the pipe would never reach end-of-file.
        drop(cmd);
        self.pumps.push(pump);
        self.sink.note(&format!(
            "started {} {} (pid {pid})",
            self.spec.dockerd.program.display(),
            self.spec.dockerd.args.join(" ")
        ));
        info!("dockerd started (pid {pid})");
        Ok(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_supervisor_that_cannot_start_wants_no_more_wake_ups_even_when_asked_to_stop() {
        let dir = tempfile::tempdir().unwrap();
        let dockerd = Dockerd {
            program: dir.path().join("no-dockerd"),
            args: Vec::new(),
            env: Vec::new(),
            socket: dir.path().join("s.sock"),
            log_path: dir.path().join("d.log"),
            log_max_bytes: 1 << 20,
            log_gid: 0,
            run_as: None,
            shutdown_timeout: None,
        };
        let mut sup = Supervisor::start(Spec {
            clear_stale_pid_files: false,
            ..Spec::new(dockerd, Duration::from_secs(1))
        });
        // No child is spawned, so nothing needs reaping (and no other
        // test's child is reaped).
        let mut children = Children::default();
        let interest = Interest::default();
        sup.service(&interest, &mut children, Instant::now());
        assert!(sup.finished());
        assert!(matches!(sup.state(), State::Failed { reason } if reason.contains("no-dockerd")));
        assert_eq!(sup.deadline(), None);
        sup.request_stop();
        assert_eq!(sup.deadline(), None, "a finished supervisor woke the loop");
        sup.service(&interest, &mut children, Instant::now());
        assert!(matches!(sup.state(), State::Failed { .. }));
        assert_eq!(sup.last_exit(), None);
    }
}
