//! The supervision task: spawn dockerd through the [`Reaper`], pump its output
//! into the log, wait for `/_ping` on its socket, restart it with backoff when
//! it dies, and stop it (SIGTERM, then SIGKILL at the timeout) on request.
//! dockerd dying never ends anything else: the task only reports states.
//! What to do next is decided by the pure `machine` (in the core); the task
//! here performs its actions and turns what happens (the exit, the socket
//! answering, the stop request, timers) into its events.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use nix::fcntl::OFlag;
use tokio::sync::watch;
use tokio::time::Instant;
use ws_init_core::supervise::machine::{self, Action, Event, Machine, Message, Policy, Timer};
pub use ws_init_core::supervise::{NotRunning, State};

use super::backoff::BackoffPolicy;
use super::logs::{self, EchoFilter, LogFile, LogSink};
use crate::docker_api::{self, Endpoint};
use crate::exit::ChildExit;
use crate::pid1::{self, Reaper};

/// How to run dockerd. Build with [`DockerdSpec::new`] and adjust the fields.
pub struct DockerdSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added to (or replacing in) ws-init's own environment.
    pub env: Vec<(String, String)>,
    /// The unix socket dockerd listens on (its `-H unix://…`): readiness is checked there.
    pub socket: PathBuf,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    /// Group of the log file (the docker group: it may read dockerd's log).
    pub log_gid: u32,
    /// From SIGTERM to SIGKILL when stopping.
    pub stop_timeout: Duration,
    /// Deleted before every start: a pid file left by an unclean stop makes
    /// dockerd refuse to start.
    pub stale_files: Vec<PathBuf>,
    /// Runs before every start, after `stale_files` are gone.
    pub pre_start: Option<Box<dyn Fn()>>,
    pub backoff: BackoffPolicy,
    /// A start that has not answered `/_ping` after this long is reported
    /// (and reported again each period); dockerd is left to carry on.
    pub ready_warn_after: Duration,
    /// Run as this user (rootless mode) instead of root.
    pub run_as: Option<pid1::RunAs>,
}

impl DockerdSpec {
    pub fn new(
        program: impl Into<PathBuf>,
        socket: impl Into<PathBuf>,
        log_path: impl Into<PathBuf>,
    ) -> DockerdSpec {
        DockerdSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            socket: socket.into(),
            log_path: log_path.into(),
            log_max_bytes: crate::config::DEFAULT_DOCKERD_LOG_MAX,
            log_gid: crate::config::DEFAULT_DOCKER_GID,
            stop_timeout: crate::config::DEFAULT_STOP_TIMEOUT,
            stale_files: Vec::new(),
            pre_start: None,
            backoff: BackoffPolicy::default(),
            ready_warn_after: Duration::from_secs(30),
            run_as: None,
        }
    }
}

/// The lead's view of the supervised dockerd. Clones share the same daemon.
#[derive(Clone)]
pub struct DockerdHandle {
    state: watch::Receiver<State>,
    stop: Rc<watch::Sender<bool>>,
    last_exit: Rc<Cell<Option<ChildExit>>>,
    shutdown_timeout: Option<Duration>,
}

impl DockerdHandle {
    /// The `--shutdown-timeout` on dockerd's command line (the last one
    /// wins), if any: how long it gives inner containers after SIGTERM.
    pub fn shutdown_timeout(&self) -> Option<Duration> {
        self.shutdown_timeout
    }

    /// A receiver of state changes.
    pub fn state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    pub fn current(&self) -> State {
        self.state.borrow().clone()
    }

    /// Waits until dockerd answers (its pid), or it is stopped or cannot
    /// start. Crashes in between are waited out: bound this with a timeout.
    pub async fn ready(&self) -> Result<i32, NotRunning> {
        let mut rx = self.state.clone();
        let state = rx
            .wait_for(|s| {
                matches!(
                    s,
                    State::Ready { .. } | State::Stopped | State::Failed { .. }
                )
            })
            .await
            .map(|s| s.clone())
            .unwrap_or(State::Stopped);
        match state {
            State::Ready { pid } => Ok(pid),
            State::Failed { reason } => Err(NotRunning::Failed(reason)),
            _ => Err(NotRunning::Stopped),
        }
    }

    /// Waits for the first start's outcome: dockerd answers (its pid), or
    /// why not: the supervisor gave up (program missing or not executable),
    /// or dockerd exited before it answered (it is retried meanwhile, with
    /// backoff), or it was stopped.
    pub async fn first_start(&self) -> Result<i32, String> {
        let mut rx = self.state.clone();
        let state = rx
            .wait_for(|s| !matches!(s, State::Starting { .. }))
            .await
            .map(|s| s.clone())
            .unwrap_or(State::Stopped);
        match state {
            State::Ready { pid } => Ok(pid),
            State::Failed { reason } => Err(format!("dockerd cannot start ({reason})")),
            State::Restarting { .. } => Err(match self.last_exit.get() {
                Some(exit) => {
                    format!("dockerd {exit} before it answered; it is restarted in the background")
                }
                None => "dockerd failed to start; it is retried in the background".to_string(),
            }),
            State::Stopped | State::Starting { .. } => Err("dockerd was stopped".to_string()),
        }
    }

    /// Stops dockerd for good: SIGTERM (it stops its containers), SIGKILL
    /// after the spec's stop timeout. Returns how the last dockerd ended, if
    /// one was running. Safe to call more than once.
    pub async fn stop(&self) -> Option<ChildExit> {
        self.stop.send_replace(true);
        let mut rx = self.state.clone();
        let _ = rx
            .wait_for(|s| matches!(s, State::Stopped | State::Failed { .. }))
            .await;
        self.last_exit.get()
    }
}

pub struct Supervisor;

impl Supervisor {
    /// Starts supervising: the first dockerd is spawned by a local task, so
    /// this must run inside the `LocalSet` the reaper runs in.
    pub fn start(reaper: &Reaper, spec: DockerdSpec) -> DockerdHandle {
        let (state_tx, state_rx) = watch::channel(State::Starting {
            pid: None,
            attempt: 0,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let last_exit = Rc::new(Cell::new(None));
        let shutdown_timeout = shutdown_timeout_arg(&spec.args);
        let task = Task {
            reaper: reaper.clone(),
            endpoint: Endpoint::Unix(spec.socket.clone()),
            sink: Rc::new(RefCell::new(LogSink::new(
                LogFile::open(&spec.log_path, spec.log_max_bytes, spec.log_gid),
                EchoFilter::default(),
            ))),
            spec,
            state: state_tx,
            stop: stop_rx,
            last_exit: last_exit.clone(),
        };
        tokio::task::spawn_local(task.run());
        DockerdHandle {
            state: state_rx,
            stop: Rc::new(stop_tx),
            last_exit,
            shutdown_timeout,
        }
    }
}

struct Task {
    reaper: Reaper,
    spec: DockerdSpec,
    endpoint: Endpoint,
    sink: Rc<RefCell<LogSink>>,
    state: watch::Sender<State>,
    stop: watch::Receiver<bool>,
    last_exit: Rc<Cell<Option<ChildExit>>>,
}

type Probe = Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// The I/O the machine is waiting on: at most one dockerd, one readiness
/// probe and one timer at a time.
#[derive(Default)]
struct Waits {
    running: Option<Running>,
    probe: Option<Probe>,
    timer: Option<(Instant, Timer)>,
    stop_seen: bool,
}

impl Task {
    /// Performs the machine's actions and feeds it what happens, until it
    /// says it is finished.
    async fn run(mut self) {
        let policy = Policy {
            backoff: self.spec.backoff,
            stop_timeout: self.spec.stop_timeout,
            ready_warn_after: self.spec.ready_warn_after,
        };
        let (mut machine, mut actions) = Machine::start(policy);
        let mut waits = Waits::default();
        if *self.stop.borrow() {
            // Stopped before the first start: nothing is spawned.
            waits.stop_seen = true;
            (machine, actions) = machine::next(&machine, Event::StopRequested);
        }
        loop {
            let mut events = Vec::new();
            for action in actions {
                if action == Action::Finish {
                    return;
                }
                self.perform(action, &mut waits, &mut events).await;
            }
            let event = match events.pop() {
                Some(event) => event,
                None => self.wait(&mut waits).await,
            };
            // An action yields at most one event (a spawn's outcome).
            debug_assert!(events.is_empty());
            (machine, actions) = machine::next(&machine, event);
        }
    }

    async fn perform(&mut self, action: Action, waits: &mut Waits, events: &mut Vec<Event>) {
        match action {
            Action::Spawn => {
                self.prepare_start();
                waits.probe = None;
                events.push(match self.spawn() {
                    Ok(running) => {
                        let pid = running.pid;
                        waits.running = Some(running);
                        Event::Started {
                            pid,
                            now: std::time::Instant::now(),
                        }
                    }
                    Err(e) => {
                        let reason = format!("{}: {e}", self.spec.program.display());
                        self.sink
                            .borrow_mut()
                            .note(&format!("cannot start dockerd: {reason}"));
                        Event::SpawnFailed {
                            reason,
                            fatal: matches!(
                                e.kind(),
                                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                            ),
                            now: std::time::Instant::now(),
                        }
                    }
                });
            }
            Action::ProbeReady => {
                let endpoint = self.endpoint.clone();
                let deadline = Instant::now() + self.spec.ready_warn_after;
                waits.probe = Some(Box::pin(async move {
                    docker_api::wait_ready(&endpoint, deadline)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.last.to_string())
                }));
            }
            Action::Signal(sig) => {
                if let Some(running) = waits.running.as_mut() {
                    running.signal(sig).await;
                }
            }
            Action::Arm(timer, delay) => {
                waits.timer = Some((
                    Instant::now().checked_add(delay).unwrap_or_else(far_future),
                    timer,
                ));
            }
            Action::Report(state) => {
                self.state.send_replace(state);
            }
            Action::RecordExit(exit) => self.last_exit.set(exit),
            Action::Log(message) => self.log(message),
            Action::Finish => {}
        }
    }

    /// The next thing that happens. On a tie, an exit comes before a stop
    /// request, and both before readiness and timers.
    async fn wait(&mut self, waits: &mut Waits) -> Event {
        let stop = &mut self.stop;
        let stop_seen = waits.stop_seen;
        let timer = waits.timer;
        let running = &mut waits.running;
        let probe = &mut waits.probe;
        let event = tokio::select! {
            biased;
            exit = async { running.as_mut().unwrap().wait().await }, if running.is_some() => {
                Event::Exited { exit, now: std::time::Instant::now() }
            }
            _ = stop_requested(stop), if !stop_seen => Event::StopRequested,
            result = async { probe.as_mut().unwrap().await }, if probe.is_some() => {
                let now = std::time::Instant::now();
                match result {
                    Ok(()) => Event::Ready { now },
                    Err(error) => Event::ReadyTimeout { error, now },
                }
            }
            _ = tokio::time::sleep_until(timer.map_or_else(far_future, |t| t.0)), if timer.is_some() => {
                Event::Timer(timer.unwrap().1)
            }
        };
        match &event {
            Event::Exited { .. } => {
                waits.running = None;
                waits.probe = None;
            }
            Event::StopRequested => waits.stop_seen = true,
            Event::Ready { .. } | Event::ReadyTimeout { .. } => waits.probe = None,
            Event::Timer(_) => waits.timer = None,
            _ => {}
        }
        event
    }

    fn log(&self, message: Message) {
        let endpoint = &self.endpoint;
        let log_path = self.spec.log_path.display();
        match message {
            Message::SpawnFailed { reason } => tracing::error!("cannot start dockerd ({reason})"),
            Message::GaveUp { reason } => tracing::error!(
                "cannot start dockerd ({reason}); Docker stays unavailable in this workspace"
            ),
            Message::DiedBeforeReady { exit } => tracing::error!(
                "dockerd {exit} before it answered on {endpoint}; see {log_path} for why"
            ),
            Message::Restarting {
                exit,
                up,
                delay,
                attempt,
            } => {
                tracing::warn!(
                    "dockerd {exit} after {:.1} s; restarting in {delay:?} (restart {attempt}; its log: {log_path})",
                    up.as_secs_f64(),
                );
                self.sink
                    .borrow_mut()
                    .note(&format!("dockerd {exit}; restarting in {delay:?}"));
            }
            Message::Ready { pid, after } => {
                let ms = after.as_millis();
                tracing::info!("dockerd ready after {ms} ms (pid {pid}, {endpoint})");
                self.sink
                    .borrow_mut()
                    .note(&format!("dockerd answers on {endpoint} after {ms} ms"));
            }
            Message::NotAnswering { pid, waited, error } => tracing::warn!(
                "dockerd (pid {pid}) not answering after {:.0} s: {error}; still waiting",
                waited.as_secs_f64(),
            ),
            Message::Stopping { pid } => tracing::info!("stopping dockerd (pid {pid})"),
            Message::Killing { pid } => tracing::warn!(
                "dockerd (pid {pid}) still running {:.1} s after SIGTERM: sending SIGKILL",
                self.spec.stop_timeout.as_secs_f64()
            ),
            Message::StoppedAs { exit } => {
                tracing::info!("dockerd {exit}");
                self.sink
                    .borrow_mut()
                    .note(&format!("dockerd stopped: {exit}"));
            }
            Message::KillIgnored { pid } => {
                tracing::error!("dockerd (pid {pid}) did not end after SIGKILL")
            }
        }
    }

    /// Clears what an unclean stop leaves behind, then runs the lead's hook.
    fn prepare_start(&self) {
        for path in &self.spec.stale_files {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::debug!("removed stale {}", path.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    "cannot remove stale {}: {e}; dockerd may refuse to start",
                    path.display()
                ),
            }
        }
        if let Some(hook) = &self.spec.pre_start {
            hook();
        }
    }

    /// Spawns dockerd with stdout and stderr on one pipe read by [`logs::pump`].
    fn spawn(&self) -> io::Result<Running> {
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // Registered before the spawn: a dockerd whose output nobody reads
        // would die of SIGPIPE on its first log line.
        let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(read_end)?;
        let mut cmd = Command::new(&self.spec.program);
        cmd.args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_end.try_clone()?))
            .stderr(Stdio::from(write_end));
        pid1::configure_child(&mut cmd, self.spec.run_as.as_ref(), false);
        let child = self.reaper.spawn(&mut cmd)?;
        // The Command holds our copies of the write end: without dropping it,
        // the pipe would never reach end-of-file.
        drop(cmd);
        let pid = child.pid();
        self.sink.borrow_mut().note(&format!(
            "started {} {} (pid {pid})",
            self.spec.program.display(),
            self.spec.args.join(" ")
        ));
        tokio::task::spawn_local(logs::pump(pipe, self.sink.clone()));
        tracing::info!("dockerd started (pid {pid})");
        Ok(Running::new(child))
    }
}

/// A deadline no timer reaches (about 30 years on).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

/// dockerd's `--shutdown-timeout` in `args` (the last one wins); `None`
/// without one (daemon.json may set it) or when it is no whole number of
/// seconds. A negative one means "wait forever".
fn shutdown_timeout_arg(args: &[String]) -> Option<Duration> {
    let last = crate::plan::dockerd_args::user_values(args, "shutdown-timeout").pop()?;
    match last.parse::<i64>().ok()? {
        s if s < 0 => Some(Duration::MAX),
        s => Some(Duration::from_secs(s as u64)),
    }
}

/// dockerd as it runs: its exit status arrives through a future kept here,
/// so waiting for it can be interrupted and resumed (`pid1::Child::wait`
/// must not be dropped half-way), and signalling can first check, without
/// blocking, that the process has not been reaped (its pid cannot be reused
/// before that).
struct Running {
    pid: i32,
    exit: Pin<Box<dyn Future<Output = ChildExit>>>,
    done: Option<ChildExit>,
}

impl Running {
    fn new(mut child: pid1::Child) -> Running {
        Running {
            pid: child.pid(),
            exit: Box::pin(async move { child.wait().await }),
            done: None,
        }
    }

    /// Waits for the exit; cancel-safe.
    async fn wait(&mut self) -> ChildExit {
        if let Some(exit) = self.done {
            return exit;
        }
        let exit = (&mut self.exit).await;
        self.done = Some(exit);
        exit
    }

    /// The exit status if the reaper has already delivered it.
    async fn try_exit(&mut self) -> Option<ChildExit> {
        if self.done.is_none() {
            let exit = &mut self.exit;
            self.done = std::future::poll_fn(|cx| match exit.as_mut().poll(cx) {
                Poll::Ready(status) => Poll::Ready(Some(status)),
                Poll::Pending => Poll::Ready(None),
            })
            .await;
        }
        self.done
    }

    async fn signal(&mut self, signo: i32) {
        // No await between the check and kill: on this single-threaded
        // runtime the reaper cannot reap the pid in between.
        if self.try_exit().await.is_none() {
            // SAFETY: plain kill of our own child, not reaped yet.
            unsafe {
                libc::kill(self.pid, signo);
            }
        }
    }
}

/// Resolves when stop is requested; never if every handle is gone.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_timeout_is_read_from_the_command_line() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shutdown_timeout_arg(&args(&["--group=docker", "--shutdown-timeout=4"])),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            shutdown_timeout_arg(&args(&["--shutdown-timeout=4", "--shutdown-timeout", "30"])),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            shutdown_timeout_arg(&args(&["--shutdown-timeout=-1"])),
            Some(Duration::MAX)
        );
        assert_eq!(shutdown_timeout_arg(&args(&["--debug"])), None);
        assert_eq!(shutdown_timeout_arg(&args(&["--shutdown-timeout=x"])), None);
    }
}
