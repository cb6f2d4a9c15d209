//! `ws-init CMD` as PID 1: bring-up in a short-lived child, then the main
//! command, the dockerd supervisor and the DNS forwarder on one poll loop,
//! then the ordered stop within `WS_STOP_TIMEOUT`.
//!
//! The flow reads top to bottom; every wait in it runs [`Core::wait_until`],
//! which keeps reaping, copying dockerd's output, answering DNS and
//! collecting signals while it waits.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bringup_child::{bring_up, BringupFailed};
use crate::event_loop::{start_docker, Core, Incoming, NOT_OURS_POLL};
use crate::exit::{spawn_error_code, ChildExit};
use crate::handover::DockerWait;
use crate::log;
use crate::pid1::stdin_is_tty;
use crate::reactor::after;
use crate::reaper::all_gone;
use crate::signals::{self, Action, SignalFd};
use crate::spawn::configure_child;
use crate::stop::{stop_everything, stop_now, StopDeadlines};
use crate::supervisor::Supervisor;

/// How long `WS_DOCKER_WAIT` holds the main command back at most: a broken
/// daemon must not keep the workspace from starting at all.
pub const DOCKER_WAIT_LIMIT: Duration = Duration::from_secs(60);

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
    let mut h = match bring_up(&mut core, bringup) {
        Ok(h) => h,
        Err(BringupFailed(code)) => {
            // The configured budget is bring-up's to read: the default then.
            stop_now(&mut core, crate::stop_budget::DEFAULT_STOP_TIMEOUT);
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
    let gone = core.wait_polling(Some(deadlines.main), NOT_OURS_POLL, |c| {
        // Drained: nobody is left to forward them to.
        while c.next_signal().is_some() {}
        all_gone(outsiders)
    });
    if !gone {
        warn!("processes started with docker exec still running at the main command's deadline");
    }
}
