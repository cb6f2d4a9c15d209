//! Restart policy for dockerd, as a pure state machine: the supervisor asks
//! for the delay before the next start and sleeps; nothing here touches time
//! or processes, so every case is a unit test.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay after the first unexpected exit.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
    /// A run at least this long counts as healthy: the next delay starts over.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    /// Unexpected exits since the last healthy run.
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// The delay before starting again, for a run that began at `last_start`
    /// and ended (unexpectedly) at `now`: initial, doubled per consecutive
    /// failure, capped at max; a long enough run resets the sequence.
    pub fn next_delay(&mut self, now: Instant, last_start: Instant) -> Duration {
        if now.saturating_duration_since(last_start) >= self.policy.reset_after {
            self.failures = 0;
        }
        // 2^20 × anything sensible is past any cap: stop doubling there.
        let factor = 1u32 << self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        self.policy
            .initial
            .saturating_mul(factor)
            .min(self.policy.max)
    }

    /// Consecutive unexpected exits counted so far (1 after the first).
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn delays_double_from_half_a_second_up_to_the_cap() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let t0 = Instant::now();
        let mut start = t0;
        let mut got = Vec::new();
        for _ in 0..10 {
            // Each run dies after 1 s: never healthy.
            let end = start + secs(1.0);
            let d = b.next_delay(end, start);
            got.push(d.as_secs_f64());
            start = end + d;
        }
        assert_eq!(
            got,
            vec![0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
        );
        assert_eq!(b.failures(), 10);
    }

    #[test]
    fn a_healthy_run_starts_the_sequence_over() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let t0 = Instant::now();
        for _ in 0..4 {
            b.next_delay(t0 + secs(1.0), t0);
        }
        assert_eq!(b.next_delay(t0 + secs(1.0), t0), secs(8.0));
        // Up for exactly the reset period: healthy.
        let start = t0 + secs(100.0);
        assert_eq!(b.next_delay(start + secs(60.0), start), secs(0.5));
        assert_eq!(b.failures(), 1);
        // Just under it: still failing.
        let start = t0 + secs(200.0);
        assert_eq!(b.next_delay(start + secs(59.9), start), secs(1.0));
    }

    #[test]
    fn many_failures_never_overflow() {
        let mut b = Backoff::new(BackoffPolicy {
            initial: Duration::from_secs(u64::MAX / 4),
            max: Duration::MAX,
            reset_after: Duration::MAX,
        });
        let t0 = Instant::now();
        for _ in 0..100 {
            b.next_delay(t0, t0);
        }
        assert_eq!(b.next_delay(t0, t0), Duration::MAX);
    }

    #[test]
    fn a_clock_going_backwards_is_not_a_healthy_run() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let t0 = Instant::now() + secs(1000.0);
        b.next_delay(t0, t0);
        assert_eq!(b.next_delay(t0 - secs(500.0), t0), secs(1.0));
    }
}
