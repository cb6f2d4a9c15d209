//! `ws-init CMD` as PID 1: bring-up in a short-lived child, then the main
//! command, the dockerd supervisor and the DNS forwarder on one poll loop,
//! then the ordered stop within `WS_STOP_TIMEOUT`.
//!
//! The flow reads top to bottom; every wait in it runs [`Core::wait_until`],
//! which keeps reaping, copying dockerd's output, answering DNS and
//! collecting signals while it waits.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dns::{Config as DnsConfig, Forwarder};
use crate::exit::{spawn_error_code, ChildExit};
use crate::handover::{self, DockerWait, Dockerd, Handover};
use crate::pid1::stdin_is_tty;
use crate::reactor::{after, earliest, Interest};
use crate::reaper::{all_gone, Children};
use crate::signals::{self, Action, SignalFd};
use crate::spawn::configure_child;
use crate::stop_budget;
use crate::supervisor::{Spec, Supervisor};
use crate::{inner_containers, log};

/// How long `WS_DOCKER_WAIT` holds the main command back at most: a broken
/// daemon must not keep the workspace from starting at all.
pub const DOCKER_WAIT_LIMIT: Duration = Duration::from_secs(60);

/// A signal for the flow, with what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    pub signo: i32,
    pub action: Action,
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
    reading: Option<(OwnedFd, Vec<u8>, bool)>,
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
    fn turn(&mut self, deadline: Option<Instant>) {
        let fd = self.sigfd.as_raw_fd();
        self.interest.clear();
        self.interest.read(fd);
        let mut due = deadline;
        if let Some((pipe, _, _)) = &self.reading {
            self.interest.read(pipe.as_raw_fd());
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
        if let Some((pipe, buf, eof)) = self.reading.as_mut() {
            if self.interest.readable(pipe.as_raw_fd()) {
                read_available(pipe, buf, eof);
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
        mut done: impl FnMut(&mut Core) -> bool,
    ) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            self.turn(deadline);
        }
    }

    pub fn next_signal(&mut self) -> Option<Incoming> {
        self.inbox.pop_front()
    }

    /// Waits for a registered child's exit until `deadline`.
    fn wait_child(&mut self, pid: i32, deadline: Option<Instant>) -> Option<ChildExit> {
        let mut exit = None;
        self.wait_until(deadline, |c| {
            exit = c.children.take_exit(pid);
            exit.is_some()
        });
        exit
    }

    /// Waits until nothing but us is left, checking every 50 ms for the
    /// processes that are not our children. True if nothing is left.
    fn wait_nothing_left(&mut self, deadline: Instant) -> bool {
        loop {
            if self.children.nothing_left() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.turn(Some(deadline.min(now + Duration::from_millis(50))));
        }
    }
}

fn read_available(pipe: &OwnedFd, buf: &mut Vec<u8>, eof: &mut bool) {
    let mut chunk = [0u8; 4096];
    loop {
        // SAFETY: reading into a stack buffer of the length given.
        let n = unsafe {
            libc::read(
                pipe.as_raw_fd(),
                chunk.as_mut_ptr() as *mut libc::c_void,
                chunk.len(),
            )
        };
        match n {
            0 => {
                *eof = true;
                return;
            }
            n if n > 0 => buf.extend_from_slice(&chunk[..n as usize]),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    *eof = true;
                }
                return;
            }
        }
    }
}

/// A pipe: (read end nonblocking + CLOEXEC, write end CLOEXEC).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(r.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(r.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    Ok((r, w))
}

/// Deadlines of the ordered stop, all within `stop_timeout` of its start
/// (the split is [`stop_budget::split`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopDeadlines {
    pub main: Instant,
    /// Inner containers still running are SIGKILLed here at the latest.
    pub containers: Instant,
    pub dockerd: Instant,
    pub kill: Instant,
}

impl StopDeadlines {
    pub fn from(start: Instant, stop_timeout: Duration) -> StopDeadlines {
        let split = stop_budget::split(stop_timeout);
        StopDeadlines {
            main: start + split.main,
            containers: start + split.containers,
            dockerd: start + split.dockerd,
            kill: start + split.kill,
        }
    }
}

/// Why bring-up handed nothing over: the exit status ws-init ends with.
pub struct BringupFailed(pub i32);

/// Runs `ws-init-bringup __bringup` and reads its handover, collecting
/// signals meanwhile. A stop signal (or a bring-up that never hands over)
/// ends it; the caller then stops in order.
pub fn bring_up(core: &mut Core, program: &Path) -> Result<Handover, BringupFailed> {
    let (read_end, write_end) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            error!("cannot create the pipe bring-up hands its plan over on: {e}");
            return Err(BringupFailed(1));
        }
    };
    let mut cmd = Command::new(program);
    cmd.arg("__bringup")
        .env(handover::FD_ENV, "3")
        .stdin(Stdio::null());
    let wfd = write_end.as_raw_fd();
    // SAFETY: between fork and exec only dup2 (async-signal-safe) on a
    // descriptor prepared before the fork.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::dup2(wfd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    configure_child(&mut cmd, None, false);
    let pid = match core.children.spawn(&mut cmd) {
        Ok(pid) => pid,
        Err(e) => {
            error!(
                "cannot run {} ({e}); it is installed with ws-init (image/build.sh installs both); reinstall ws-init",
                program.display()
            );
            return Err(BringupFailed(1));
        }
    };
    drop(cmd);
    drop(write_end);
    core.reading = Some((read_end, Vec::new(), false));
    let mut stop = None;
    core.wait_until(None, |c| {
        while let Some(sig) = c.next_signal() {
            if signals::starts_stop(sig.signo) {
                stop = Some(sig.signo);
            } else {
                debug!(
                    "{} received before the main command started: dropped",
                    signals::name(sig.signo)
                );
            }
        }
        stop.is_some() || c.reading.as_ref().is_some_and(|r| r.2)
    });
    let (_, text, _) = core.reading.take().expect("set above");
    if let Some(signo) = stop {
        info!(
            "{} received during bring-up: stopping",
            signals::name(signo)
        );
        core.children.signal(pid, libc::SIGKILL);
        return Err(BringupFailed(128 + signo));
    }
    if text.is_empty() {
        // Nothing handed over: its exit status says why (it logged it).
        let exit = core.wait_child(pid, None);
        return Err(BringupFailed(match exit {
            Some(ChildExit::Exited(0)) | None => {
                error!("bring-up ended without handing over a plan; this is a bug in ws-init");
                1
            }
            Some(ChildExit::Exited(code)) => code,
            Some(e @ ChildExit::Signaled { .. }) => {
                error!("bring-up {e} before handing over a plan; the workspace cannot start (run `ws-init doctor` to see what it found)");
                1
            }
        }));
    }
    match std::str::from_utf8(&text)
        .map_err(|_| handover::DecodeError("not UTF-8".into()))
        .and_then(Handover::decode)
    {
        Ok(h) => Ok(h),
        Err(e) => {
            error!("{e}");
            Err(BringupFailed(1))
        }
    }
}

/// Starts the DNS forwarder and dockerd as handed over. Returns whether
/// dockerd is supervised.
pub fn start_docker(core: &mut Core, h: &mut Handover) -> bool {
    let Some(d) = h.dockerd.take() else {
        return false;
    };
    // The forwarder listens before dockerd hands its address out.
    let args = match &h.dns {
        Some(dns) => {
            let cfg = DnsConfig::new(dns.listen, dns.upstreams.clone());
            let (forwarder, args) = crate::dns::start_planned(cfg, &d.args, &dns.dockerd_args);
            core.dns = forwarder;
            args
        }
        None => d.args.clone(),
    };
    if d.run_as.is_none() {
        info!("starting dockerd {}", args.join(" "));
    }
    let d = Dockerd { args, ..d };
    core.dockerd = Some(Supervisor::start(Spec::new(d, h.stop_timeout)));
    true
}

/// `WS_DOCKER_WAIT`: holds the main command back until Docker answers, the
/// supervisor gives up or dockerd fails before answering, or the limit
/// passes. Returns the signal number if SIGTERM/SIGINT asked to stop.
pub fn wait_for_docker(core: &mut Core, wait: DockerWait, bringup: &Path) -> Option<i32> {
    let limit = DOCKER_WAIT_LIMIT.as_secs();
    let deadline = after(Instant::now(), DOCKER_WAIT_LIMIT);
    let helper = match wait {
        DockerWait::Off => return None,
        DockerWait::Supervised => None,
        DockerWait::Poll => {
            let mut cmd = Command::new(bringup);
            cmd.args(["wait-docker", "--timeout", &limit.to_string()])
                .stdin(Stdio::null());
            configure_child(&mut cmd, None, false);
            match core.children.spawn(&mut cmd) {
                Ok(pid) => Some(pid),
                Err(e) => {
                    warn!(
                        "cannot run {} wait-docker ({e}); starting the main command without waiting for Docker",
                        bringup.display()
                    );
                    return None;
                }
            }
        }
    };
    let mut stop = None;
    let mut outcome: Option<Result<(), String>> = None;
    let finished = core.wait_until(Some(deadline), |c| {
        while let Some(sig) = c.next_signal() {
            if signals::starts_stop(sig.signo) {
                info!(
                    "{} received while waiting for Docker: stopping",
                    signals::name(sig.signo)
                );
                stop = Some(sig.signo);
                return true;
            }
            debug!(
                "{} received before the main command started: dropped",
                signals::name(sig.signo)
            );
        }
        outcome = match helper {
            Some(pid) => c.children.take_exit(pid).map(|exit| match exit {
                ChildExit::Exited(0) => Ok(()),
                // wait-docker said why on stderr.
                _ => Err(format!(
                    "Docker did not answer within {limit}s; starting the main command anyway"
                )),
            }),
            None => c
                .dockerd
                .as_ref()
                .and_then(Supervisor::first_start)
                .map(|r| {
                    r.map(|_| ()).map_err(|why| {
                        format!("{why}: starting the main command without Docker (WS_DOCKER_WAIT)")
                    })
                }),
        };
        outcome.is_some()
    });
    if stop.is_some() {
        return stop;
    }
    match outcome {
        Some(Ok(())) => info!("Docker answers: starting the main command (WS_DOCKER_WAIT)"),
        Some(Err(why)) => warn!("{why}"),
        None if !finished => {
            warn!("Docker did not answer within {limit}s; starting the main command anyway")
        }
        None => {}
    }
    None
}

/// `ws-init CMD`: the workspace's whole life; returns ws-init's exit status.
pub fn run(args: Vec<OsString>, bringup: &Path) -> i32 {
    let cwd = std::env::current_dir().ok();
    // ws-init itself must not pin any mount.
    let _ = std::env::set_current_dir("/");
    match crate::pid1::become_subreaper_if_needed() {
        Ok(true) => info!("not PID 1: registered as child subreaper"),
        Ok(false) => {}
        Err(e) => warn!(
            "cannot become child subreaper ({e}); orphans of the main command may stay zombies"
        ),
    }
    let sigfd = match SignalFd::open() {
        Ok(fd) => fd,
        Err(e) => {
            error!("cannot open a signalfd to receive signals: {e}");
            return 1;
        }
    };
    let mut core = Core::new(sigfd);
    // The default stop budget until bring-up says otherwise.
    let default_stop = Duration::from_secs(10);
    let mut h = match bring_up(&mut core, bringup) {
        Ok(h) => h,
        Err(BringupFailed(code)) => {
            stop_now(&mut core, default_stop);
            return code;
        }
    };
    log::init(h.log_level, h.log_json);
    start_docker(&mut core, &mut h);
    if let Some(signo) = wait_for_docker(&mut core, h.wait, bringup) {
        stop_now(&mut core, h.stop_timeout);
        return 128 + signo;
    }

    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    if let Some(dir) = &cwd {
        cmd.current_dir(dir);
    }
    configure_child(&mut cmd, h.main_user.as_ref(), stdin_is_tty());
    let program = args[0].to_string_lossy().into_owned();
    let main = match core.children.spawn(&mut cmd) {
        Ok(pid) => pid,
        Err(e) => {
            let code = spawn_error_code(&e);
            error!("cannot run {program:?}: {e}");
            stop_now(&mut core, h.stop_timeout);
            return code;
        }
    };
    drop(cmd);
    info!(
        "started {program:?} pid={main} user={}",
        h.main_user
            .as_ref()
            .map(|u| u.name.as_str())
            .unwrap_or("(unchanged)")
    );

    // Until the main command exits or a stop signal arrives, every signal
    // goes to it.
    let mut exit = None;
    core.wait_until(None, |c| {
        if let Some(e) = c.children.take_exit(main) {
            exit = Some(e);
            return true;
        }
        while let Some(sig) = c.next_signal() {
            deliver(c, main, sig, true);
            if signals::starts_stop(sig.signo) {
                info!(
                    "{} received: stopping the workspace",
                    signals::name(sig.signo)
                );
                return true;
            }
        }
        false
    });
    let deadlines = StopDeadlines::from(Instant::now(), h.stop_timeout);
    let exit = match exit {
        Some(e) => {
            main_share_after_exit(&mut core, e, &deadlines);
            e
        }
        None => main_share(&mut core, main, &deadlines),
    };
    stop_everything(&mut core, &deadlines);
    exit.exit_code()
}

/// Sends a received signal on to the main command; for SIGTSTP/SIGTTIN/
/// SIGTTOU when ws-init is not PID 1, then stops ws-init too (`job_control`:
/// not while the workspace is stopping, which must keep its deadlines).
fn deliver(core: &Core, main: i32, sig: Incoming, job_control: bool) {
    debug!(
        "forwarding {} to the main command",
        signals::name(sig.signo)
    );
    core.children.signal(main, sig.signo);
    if job_control && sig.action == Action::ForwardThenStop {
        // Continued by SIGCONT, which then arrives here and is forwarded.
        signals::stop_self();
    }
}

/// The main command's share of the stop, which has begun (it got SIGTERM):
/// processes entered with `docker exec` get SIGTERM now too, and both are
/// waited for until the main deadline, still forwarding signals to the main
/// command. It is SIGKILLed then.
fn main_share(core: &mut Core, main: i32, deadlines: &StopDeadlines) -> ChildExit {
    let outsiders = signal_outsiders(core);
    let mut exit = None;
    let ended = core.wait_until(Some(deadlines.main), |c| {
        if let Some(e) = c.children.take_exit(main) {
            exit = Some(e);
            return true;
        }
        while let Some(sig) = c.next_signal() {
            deliver(c, main, sig, false);
        }
        false
    });
    let exit = match exit {
        Some(e) if ended => e,
        _ => {
            warn!("main command still running at its stop deadline: sending SIGKILL");
            core.children.signal(main, libc::SIGKILL);
            // SIGKILL cannot be refused; the bound only guards against D-state.
            core.wait_child(main, Some(Instant::now() + Duration::from_secs(2)))
                .unwrap_or(ChildExit::Signaled {
                    signal: libc::SIGKILL,
                    core_dumped: false,
                })
        }
    };
    info!("main command {exit}");
    wait_outsiders(core, &outsiders, deadlines);
    exit
}

/// The main command ended by itself: `docker exec` processes still get
/// their SIGTERM and the main deadline.
fn main_share_after_exit(core: &mut Core, exit: ChildExit, deadlines: &StopDeadlines) {
    info!("main command {exit}");
    let outsiders = signal_outsiders(core);
    wait_outsiders(core, &outsiders, deadlines);
}

fn signal_outsiders(core: &Core) -> Vec<i32> {
    let outsiders = core.children.signal_outsiders(libc::SIGTERM);
    if !outsiders.is_empty() {
        info!(
            "sent SIGTERM to {} process(es) started from outside ws-init (docker exec)",
            outsiders.len()
        );
    }
    outsiders
}

fn wait_outsiders(core: &mut Core, outsiders: &[i32], deadlines: &StopDeadlines) {
    if outsiders.is_empty() {
        return;
    }
    let gone = core.wait_until(Some(deadlines.main), |c| {
        // Drained: nobody is left to forward them to.
        while c.next_signal().is_some() {}
        all_gone(outsiders)
    });
    if !gone {
        warn!("processes started with docker exec still running at the main command's deadline");
    }
}

/// The ordered stop with its deadlines counted from now: for the ways out
/// before (or instead of) the main command's run.
pub fn stop_now(core: &mut Core, stop_timeout: Duration) {
    let deadlines = StopDeadlines::from(Instant::now(), stop_timeout);
    stop_everything(core, &deadlines);
}

/// dockerd first (the main command may have been using it), then
/// everything left.
pub fn stop_everything(core: &mut Core, deadlines: &StopDeadlines) {
    stop_dockerd(core, deadlines);
    shutdown(core, deadlines);
}

/// SIGTERM lets dockerd stop inner containers cleanly; those still running
/// when their time is over are killed meanwhile, so dockerd can finish by
/// itself.
fn stop_dockerd(core: &mut Core, deadlines: &StopDeadlines) {
    let Some(d) = core.dockerd.as_mut() else {
        return;
    };
    if d.finished() {
        return;
    }
    let t = Instant::now();
    let (hold_at, why) = inner_containers_time(t, d.shutdown_timeout(), deadlines);
    d.request_stop();
    let mut next_kill = hold_at;
    let mut first = true;
    let ended = loop {
        if core.dockerd.as_ref().is_some_and(Supervisor::finished) {
            break true;
        }
        let now = Instant::now();
        if now >= deadlines.dockerd {
            break false;
        }
        if now >= next_kill {
            let sel = inner_containers::kill_all(Path::new("/proc"));
            if !sel.pids.is_empty() {
                if first {
                    warn!(
                        "{why}: sent SIGKILL to {} inner container(s) still running ({} process(es)); dockerd sees them exit and finishes its shutdown",
                        sel.containers,
                        sel.pids.len()
                    );
                } else {
                    debug!(
                        "sent SIGKILL to {} more inner container process(es)",
                        sel.pids.len()
                    );
                }
            }
            first = false;
            next_kill = now + Duration::from_millis(100);
        }
        core.turn(Some(deadlines.dockerd.min(next_kill)));
        // Signals during the stop have nobody to go to.
        while core.next_signal().is_some() {}
    };
    if ended {
        if let Some(exit) = core.dockerd.as_ref().and_then(Supervisor::last_exit) {
            info!(
                "dockerd stopped: {exit} elapsed_ms={}",
                t.elapsed().as_millis()
            );
        }
    } else {
        warn!("dockerd still stopping at its deadline; it is killed with the rest");
    }
}

/// When inner containers still running get SIGKILL, dockerd having had
/// SIGTERM at `sigterm`, and why then: its `--shutdown-timeout`, unless that
/// would not leave dockerd the time to finish before its deadline (or is
/// unknown: set in daemon.json).
pub fn inner_containers_time(
    sigterm: Instant,
    shutdown_timeout: Option<Duration>,
    deadlines: &StopDeadlines,
) -> (Instant, String) {
    match shutdown_timeout.and_then(|d| sigterm.checked_add(d)) {
        Some(at) if at <= deadlines.containers => (
            at,
            format!(
                "dockerd's --shutdown-timeout of {} s has passed",
                shutdown_timeout.unwrap_or_default().as_secs()
            ),
        ),
        _ => (
            deadlines.containers,
            "the stop budget (WS_STOP_TIMEOUT) leaves them no more time".to_string(),
        ),
    }
}

/// Everything left gets SIGTERM, then SIGKILL at the deadline.
fn shutdown(core: &mut Core, deadlines: &StopDeadlines) {
    if !core.children.nothing_left() {
        core.children.signal_remaining(libc::SIGTERM);
        if !core.wait_nothing_left(deadlines.kill) {
            warn!("processes still running after the stop timeout: sending SIGKILL");
            core.children.signal_remaining(libc::SIGKILL);
            core.wait_nothing_left(Instant::now() + Duration::from_secs(2));
        }
    }
    let orphans = core.children.orphans_reaped();
    if orphans > 0 {
        debug!("orphans reaped during the workspace's life orphans={orphans}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_deadlines_follow_the_budget_split_in_order() {
        let t0 = Instant::now();
        let d = StopDeadlines::from(t0, Duration::from_secs(8));
        assert_eq!(d.main, t0 + Duration::from_secs(2));
        assert_eq!(d.containers, t0 + Duration::from_millis(6500));
        assert_eq!(d.dockerd, t0 + Duration::from_millis(7500));
        assert_eq!(d.kill, t0 + Duration::from_secs(8));
        let small = StopDeadlines::from(t0, Duration::from_secs(2));
        assert!(small.main < small.containers && small.containers < small.dockerd);
        assert!(small.dockerd < small.kill);
    }

    /// Inner containers get dockerd's --shutdown-timeout from its SIGTERM,
    /// but never so long that dockerd could not finish before its deadline.
    #[test]
    fn inner_containers_are_held_to_the_shutdown_timeout_within_the_budget() {
        let t0 = Instant::now();
        let d = StopDeadlines::from(t0, Duration::from_secs(8));
        let secs = Duration::from_secs;
        let sigterm = t0 + secs(2);
        let (at, why) = inner_containers_time(sigterm, Some(secs(4)), &d);
        assert_eq!(at, t0 + secs(6));
        assert!(why.contains("--shutdown-timeout of 4 s"), "{why}");
        for given in [Some(secs(30)), Some(Duration::MAX), None] {
            let (at, why) = inner_containers_time(sigterm, given, &d);
            assert_eq!(at, d.containers, "{given:?}");
            assert!(why.contains("WS_STOP_TIMEOUT"), "{why}");
        }
        let (at, _) = inner_containers_time(t0, Some(secs(1)), &d);
        assert_eq!(at, t0 + secs(1));
    }
}
