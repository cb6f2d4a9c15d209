//! Which warnings reach stderr: repeats held back, bursts cut. Pure: the
//! time comes in as an argument.

use std::time::{Duration, Instant};

/// Decides which echo lines reach stderr: an identical text is printed once
/// per `repeat_window` (the next print says how often it was held back), and
/// at most `burst` lines per `burst_window` (a panic's stack trace must not
/// flood the terminal; the rest is in the file).
#[derive(Debug)]
pub struct EchoFilter {
    repeat_window: Duration,
    burst: u32,
    burst_window: Duration,
    /// Texts printed lately (a few at most: a Vec scanned per echoed line).
    seen: Vec<(String, Seen)>,
    window_start: Option<Instant>,
    in_window: u32,
    dropped: u64,
}

#[derive(Debug)]
struct Seen {
    printed_at: Instant,
    held_back: u64,
}

/// A line to print, with what was held back before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// Times this same text was held back since it was last printed.
    pub repeats: u64,
    /// Other lines dropped by the burst limit since the last print.
    pub dropped: u64,
}

/// Bound on remembered texts; older ones are forgotten when it is reached.
const MAX_REMEMBERED: usize = 512;

impl Default for EchoFilter {
    fn default() -> Self {
        EchoFilter::new(Duration::from_secs(60), 20, Duration::from_secs(10))
    }
}

impl EchoFilter {
    pub fn new(repeat_window: Duration, burst: u32, burst_window: Duration) -> EchoFilter {
        EchoFilter {
            repeat_window,
            burst,
            burst_window,
            seen: Vec::new(),
            window_start: None,
            in_window: 0,
            dropped: 0,
        }
    }

    /// `Some` when `text` should be printed now.
    pub fn decide(&mut self, text: &str, now: Instant) -> Option<Echo> {
        let known = self.seen.iter().position(|(t, _)| t == text);
        let repeats = match known.map(|i| &mut self.seen[i].1) {
            Some(seen) if now.saturating_duration_since(seen.printed_at) < self.repeat_window => {
                seen.held_back += 1;
                return None;
            }
            Some(seen) => seen.held_back,
            None => 0,
        };
        let window_over = match self.window_start {
            Some(start) => now.saturating_duration_since(start) >= self.burst_window,
            None => true,
        };
        if window_over {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= self.burst {
            self.dropped += 1;
            return None;
        }
        self.in_window += 1;
        let printed = Seen {
            printed_at: now,
            held_back: 0,
        };
        match known {
            Some(i) => self.seen[i].1 = printed,
            None => {
                if self.seen.len() >= MAX_REMEMBERED {
                    let window = self.repeat_window;
                    self.seen
                        .retain(|(_, s)| now.saturating_duration_since(s.printed_at) < window);
                    if self.seen.len() >= MAX_REMEMBERED {
                        self.seen.clear();
                    }
                }
                self.seen.push((text.to_string(), printed));
            }
        }
        let dropped = std::mem::take(&mut self.dropped);
        Some(Echo { repeats, dropped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_messages_are_held_back_and_counted() {
        let mut f = EchoFilter::new(Duration::from_secs(60), 100, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(
            f.decide("a", t0),
            Some(Echo {
                repeats: 0,
                dropped: 0
            })
        );
        assert_eq!(f.decide("a", t0 + Duration::from_secs(1)), None);
        assert_eq!(
            f.decide("b", t0 + Duration::from_secs(1)),
            Some(Echo {
                repeats: 0,
                dropped: 0
            })
        );
        assert_eq!(f.decide("a", t0 + Duration::from_secs(59)), None);
        assert_eq!(
            f.decide("a", t0 + Duration::from_secs(60)),
            Some(Echo {
                repeats: 2,
                dropped: 0
            })
        );
        assert_eq!(f.decide("a", t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn bursts_are_cut_and_the_next_line_says_how_many_were_dropped() {
        let mut f = EchoFilter::new(Duration::from_secs(60), 3, Duration::from_secs(10));
        let t0 = Instant::now();
        let printed = (0..10)
            .filter(|i| f.decide(&format!("line {i}"), t0).is_some())
            .count();
        assert_eq!(printed, 3);
        assert_eq!(
            f.decide("later", t0 + Duration::from_secs(10)),
            Some(Echo {
                repeats: 0,
                dropped: 7
            })
        );
        assert_eq!(
            f.decide("later 2", t0 + Duration::from_secs(11)),
            Some(Echo {
                repeats: 0,
                dropped: 0
            })
        );
    }

    #[test]
    fn the_filter_memory_stays_bounded() {
        let mut f = EchoFilter::new(Duration::from_secs(60), u32::MAX, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..(MAX_REMEMBERED * 3) {
            assert!(f.decide(&i.to_string(), t0).is_some());
        }
        assert!(f.seen.len() <= MAX_REMEMBERED);
    }
}
