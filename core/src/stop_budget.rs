//! How `WS_STOP_TIMEOUT` is shared out by the ordered stop (design §5). Pure.
//!
//! From the start of the stop (SIGTERM/SIGINT, or the main command's exit):
//! - the main command, and processes entered with `docker exec`, get the
//!   first quarter;
//! - dockerd gets SIGTERM when they are gone or their quarter is over (so a
//!   `docker compose up` main command can still talk to it while it stops),
//!   gives the inner containers its `--shutdown-timeout`, and is waited for
//!   until a short `sweep` before the end;
//! - whatever is left gets SIGTERM, and SIGKILL at the end.
//!
//! `--shutdown-timeout` is what is left for the inner containers once the
//! main command's quarter, dockerd's own work after its containers (up to
//! 1 s, plus what rounding down to whole seconds leaves) and the sweep are
//! taken: so the time promised to inner containers holds whatever the main
//! command does, and dockerd ends by itself. dockerd gives each container its
//! own stop timeout, though, not less; so inner containers still running when
//! their time is over are SIGKILLed by ws-init (`dockerd::inner_containers`),
//! at the latest at `containers`. With the default 8 s: main 2 s, inner
//! containers 4 s, dockerd waited for until 7.5 s, SIGKILL at 8 s.

use std::time::Duration;

/// Default grace for the whole shutdown; below `docker stop`'s 10 s so the
/// ordered stop finishes before the engine's SIGKILL. (Also PID 1's budget
/// before bring-up has handed over the configured one.)
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(8);
/// The shortest stop budget the ordered stop fits in (main command, dockerd,
/// the rest, each with some time); less is refused at start.
pub const MIN_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Offsets from the start of the stop, and dockerd's `--shutdown-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSplit {
    /// The main command (and `docker exec`'d processes) are waited for until
    /// here; the main command is SIGKILLed then.
    pub main: Duration,
    /// dockerd is waited for until here.
    pub dockerd: Duration,
    /// Inner containers still running are SIGKILLed here at the latest (at
    /// `--shutdown-timeout` after dockerd's SIGTERM when that is earlier),
    /// so that dockerd has its own reserve to finish before its deadline.
    pub containers: Duration,
    /// Everything still running is SIGKILLed here.
    pub kill: Duration,
    /// dockerd's `--shutdown-timeout` in whole seconds.
    pub inner_containers_secs: u64,
}

/// What dockerd needs for itself after its containers are gone (containerd,
/// networks, its state on disk).
fn dockerd_own(total: Duration) -> Duration {
    (total / 8).min(Duration::from_secs(1))
}

/// Splits a budget of `total` (at least 2 s, see `config::MIN_STOP_TIMEOUT`).
pub fn split(total: Duration) -> StopSplit {
    let sweep = (total / 16).min(Duration::from_millis(500));
    let dockerd_own = dockerd_own(total);
    let main = total / 4;
    let inner = total.saturating_sub(main + dockerd_own + sweep);
    StopSplit {
        main,
        dockerd: total - sweep,
        containers: total - sweep - dockerd_own,
        kill: total,
        inner_containers_secs: inner.as_secs().max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_gives_inner_containers_4_of_8_seconds() {
        let s = split(Duration::from_secs(8));
        assert_eq!(s.main, Duration::from_secs(2));
        assert_eq!(s.inner_containers_secs, 4);
        assert_eq!(s.dockerd, Duration::from_millis(7500));
        assert_eq!(s.containers, Duration::from_millis(6500));
        assert_eq!(s.kill, Duration::from_secs(8));
        assert_eq!(split(Duration::from_secs(60)).inner_containers_secs, 43);
        assert_eq!(split(Duration::from_secs(2)).inner_containers_secs, 1);
    }

    /// Every budget from the minimum up: the main command has less than half,
    /// and dockerd, told to stop at the main deadline at the latest, has its
    /// containers' time plus a reserve before its own deadline.
    #[test]
    fn dockerd_fits_whatever_the_main_command_does() {
        for tenths in 20..=6000u64 {
            let total = Duration::from_millis(tenths * 100);
            let s = split(total);
            assert!(s.main < total / 2, "{total:?}: {s:?}");
            let inner = Duration::from_secs(s.inner_containers_secs);
            assert!(inner >= Duration::from_secs(1), "{total:?}: {s:?}");
            let own = s.dockerd - s.main - inner;
            assert!(
                s.main + inner < s.dockerd && own >= dockerd_own(total),
                "{total:?}: dockerd has {own:?} for itself: {s:?}"
            );
            // Held to `--shutdown-timeout` from a SIGTERM at the main
            // deadline at the latest, inner containers are killed in time.
            assert!(
                s.main + inner <= s.containers && s.dockerd - s.containers >= dockerd_own(total),
                "{total:?}: {s:?}"
            );
            assert!(
                s.main <= s.dockerd && s.dockerd < s.kill,
                "{total:?}: {s:?}"
            );
        }
    }
}
