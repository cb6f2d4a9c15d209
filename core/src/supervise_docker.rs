//! `start-docker`'s detached supervisor, once bring-up is done: the
//! bring-up program (`ws-init-bringup start-docker`) forks, detaches, brings
//! Docker's preparations up and then becomes this small process
//! (`ws-init __supervise-docker`), which supervises dockerd and the DNS
//! forwarder exactly as PID 1 does, tells the waiting parent once dockerd
//! answers (or cannot), and on SIGTERM or SIGINT stops it in order.
//!
//! Descriptors handed over across the exec: the handover on fd
//! `$WS_INIT_HANDOVER_FD`, the report pipe on fd `$WS_INIT_REPORT_FD`, and
//! the start-docker lock (held, never read).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::event_loop::{start_docker, Core};
use crate::handover::{self, Handover, Report};
use crate::signals::{self, SignalFd};
use crate::stop::{stop_everything, StopDeadlines};
use crate::supervise::State;

pub struct Taken {
    handover: Option<Result<OwnedFd, String>>,
    report: Option<File>,
}

/// Takes the handed-over descriptors (before anything else is opened).
pub fn take_fds() -> Taken {
    Taken {
        handover: handover::take_fd_from_env(handover::FD_ENV),
        // Unusable, it cannot carry a report either: the log says why.
        report: handover::take_fd_from_env(handover::REPORT_FD_ENV)
            .and_then(|r| r.map_err(|why| eprintln!("ws-init: {why}")).ok())
            .map(File::from),
    }
}

fn send(report: &mut Option<File>, r: &Report) {
    if let Some(mut f) = report.take() {
        // The parent may be gone (it timed out): nothing to tell then.
        let _ = f.write_all(r.encode().as_bytes());
    }
}

pub fn run(taken: Taken) -> i32 {
    let mut report = taken.report;
    let mut text = String::new();
    let read = match taken.handover {
        Some(Ok(fd)) => File::from(fd).read_to_string(&mut text).map_err(|e| e.to_string()),
        Some(Err(why)) => Err(why),
        None => Err(format!(
            "{} is not set: `ws-init __supervise-docker` is run by `ws-init start-docker`, not by hand",
            handover::FD_ENV
        )),
    };
    let mut h = match read.and_then(|_| Handover::decode(&text).map_err(|e| e.to_string())) {
        Ok(h) => h,
        Err(reason) => {
            eprintln!("ws-init: {reason}");
            send(&mut report, &Report::Failed { reason });
            return 1;
        }
    };
    // start-docker made this process a session leader and a child
    // subreaper before the exec, which keeps both; it said it started.
    crate::log::init(h.log_level, h.log_json);
    let sigfd = match SignalFd::open() {
        Ok(fd) => fd,
        Err(e) => {
            let reason = format!("cannot open a signalfd to receive signals: {e}");
            send(&mut report, &Report::Failed { reason });
            return 1;
        }
    };
    let mut core = Core::new(sigfd);
    if !start_docker(&mut core, &mut h) {
        let reason = "no dockerd to supervise in the handover".to_string();
        send(&mut report, &Report::Failed { reason });
        return 1;
    }
    let mut code = 0;
    core.wait_until(None, |c| {
        match c.dockerd.as_ref().map(|d| d.state().clone()) {
            Some(State::Ready { pid }) if report.is_some() => {
                send(&mut report, &Report::Ready { pid })
            }
            Some(State::Failed { reason }) => {
                error!("dockerd cannot be started any more: {reason}");
                send(&mut report, &Report::Failed { reason });
                code = 1;
                return true;
            }
            Some(State::Stopped) | None => {
                code = 1;
                return true;
            }
            _ => {}
        }
        while let Some(sig) = c.next_signal() {
            if matches!(sig.signo, libc::SIGTERM | libc::SIGINT) {
                info!("{} received: stopping dockerd", signals::name(sig.signo));
                return true;
            }
            debug!(
                "{} ignored by the Docker supervisor",
                signals::name(sig.signo)
            );
        }
        false
    });
    let deadlines = StopDeadlines::from(Instant::now(), h.stop_timeout);
    stop_everything(&mut core, &deadlines);
    code
}
