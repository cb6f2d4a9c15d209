//! The ordered stop once the main command is gone (or never started):
//! dockerd first, holding inner containers to their time, then everything
//! left, all within `WS_STOP_TIMEOUT` ([`stop_budget::split`]).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::event_loop::Core;
use crate::supervisor::Supervisor;
use crate::{inner_containers, stop_budget};

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
