//! Asking the upstreams in order (pure): which upstream is next, until when it may
//! answer, and what the client gets. The first answer that is not SERVFAIL/REFUSED
//! wins (TC included: the client then retries over TCP); after the last upstream or
//! at the total deadline the client gets the last answer seen, or SERVFAIL.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use super::{message, Config};
use crate::reactor::after;

/// Where one query stands.
#[derive(Debug)]
pub struct Attempts {
    /// How many upstreams were asked so far (the one being asked included).
    asked: usize,
    /// The client gets an answer by then at the latest.
    deadline: Instant,
    /// The upstream being asked gets until then.
    attempt_deadline: Instant,
    /// The last SERVFAIL/REFUSED answer, given when nobody does better.
    last: Option<Vec<u8>>,
    /// "udp" or "tcp", for the log.
    proto: &'static str,
}

/// What happens next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Ask this upstream (until [`Attempts::attempt_deadline`]).
    Ask(SocketAddr),
    /// Send this to the client: done.
    Reply(Vec<u8>),
}

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// The upstream answered this query (the ID matched).
    Answer(Vec<u8>),
    /// It could not be asked or failed (refused, reset, closed).
    Failed(io::Error),
    /// No answer by the attempt deadline.
    TimedOut,
}

fn is_final(resp: &[u8]) -> bool {
    !matches!(
        message::rcode(resp),
        message::RCODE_SERVFAIL | message::RCODE_REFUSED
    )
}

impl Attempts {
    /// A query received at `now`, and its first step.
    pub fn start(
        now: Instant,
        cfg: &Config,
        query: &[u8],
        proto: &'static str,
    ) -> (Attempts, Step) {
        let mut a = Attempts {
            asked: 0,
            deadline: after(now, cfg.total_timeout),
            attempt_deadline: now,
            last: None,
            proto,
        };
        let step = a.next(now, cfg, query);
        (a, step)
    }

    pub fn attempt_deadline(&self) -> Instant {
        self.attempt_deadline
    }

    /// The current attempt ended with `outcome` at `now` (asking `cfg.upstreams`).
    pub fn finish(&mut self, outcome: Outcome, now: Instant, cfg: &Config, query: &[u8]) -> Step {
        let up = self.asked.checked_sub(1).and_then(|i| cfg.upstreams.get(i));
        let proto = self.proto;
        match (outcome, up) {
            (Outcome::Answer(resp), _) if is_final(&resp) => return Step::Reply(resp),
            (Outcome::Answer(resp), _) => self.last = Some(resp),
            (Outcome::Failed(e), Some(up)) => debug!("dns: upstream {up} ({proto}): {e}"),
            (Outcome::TimedOut, Some(up)) => {
                debug!("dns: upstream {up} ({proto}) did not answer in time")
            }
            (_, None) => {}
        }
        self.next(now, cfg, query)
    }

    fn next(&mut self, now: Instant, cfg: &Config, query: &[u8]) -> Step {
        match cfg.upstreams.get(self.asked) {
            Some(&up) if self.asked == 0 || now < self.deadline => {
                self.asked += 1;
                self.attempt_deadline = after(now, cfg.attempt_timeout).min(self.deadline);
                Step::Ask(up)
            }
            _ => Step::Reply(self.last.take().unwrap_or_else(|| message::servfail(query))),
        }
    }

    /// Follows `step` until an attempt is under way (`Ok`: the upstream and what `open`
    /// made for it) or the reply is known (`Err`). `open` starts asking one upstream;
    /// its error counts as that upstream failing.
    pub fn begin<T>(
        &mut self,
        mut step: Step,
        now: Instant,
        cfg: &Config,
        query: &[u8],
        mut open: impl FnMut(SocketAddr) -> io::Result<T>,
    ) -> Result<(SocketAddr, T), Vec<u8>> {
        loop {
            match step {
                Step::Reply(r) => return Err(r),
                Step::Ask(up) => match open(up) {
                    Ok(t) => return Ok((up, t)),
                    Err(e) => step = self.finish(Outcome::Failed(e), now, cfg, query),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(n: u16) -> Config {
        let ups = (1..=n)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        Config {
            attempt_timeout: Duration::from_millis(300),
            total_timeout: Duration::from_millis(700),
            ..Config::new("127.0.0.1:0".parse().unwrap(), ups)
        }
    }

    fn query() -> Vec<u8> {
        let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x02db\x00\x00\x01\x00\x01");
        q
    }

    fn answer(q: &[u8], rcode: u8) -> Vec<u8> {
        let mut r = q.to_vec();
        r[2] |= 0x80;
        r[3] = 0x80 | rcode;
        r
    }

    fn up(p: u16) -> Step {
        Step::Ask(SocketAddr::from(([127, 0, 0, 1], p)))
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn upstreams_are_asked_in_order_and_the_first_final_answer_wins() {
        let (c, q, t0) = (cfg(3), query(), Instant::now());
        let (mut a, s) = Attempts::start(t0, &c, &q, "udp");
        assert_eq!(s, up(1));
        assert_eq!(a.attempt_deadline(), t0 + 300 * MS);
        let s = a.finish(Outcome::TimedOut, t0 + 300 * MS, &c, &q);
        assert_eq!(s, up(2));
        // The second attempt is cut at the total deadline.
        assert_eq!(a.attempt_deadline(), t0 + 600 * MS);
        let refused = answer(&q, message::RCODE_REFUSED);
        assert_eq!(
            a.finish(Outcome::Answer(refused), t0 + 310 * MS, &c, &q),
            up(3)
        );
        assert_eq!(a.attempt_deadline(), t0 + 610 * MS);
        // NXDOMAIN is an answer like any other; TC too.
        let nx = answer(&q, 3);
        assert_eq!(
            a.finish(Outcome::Answer(nx.clone()), t0 + 320 * MS, &c, &q),
            Step::Reply(nx)
        );
    }

    #[test]
    fn the_total_deadline_ends_it_with_servfail_or_the_last_answer() {
        let (c, q, t0) = (cfg(3), query(), Instant::now());
        let (mut a, _) = Attempts::start(t0, &c, &q, "udp");
        let s = a.finish(Outcome::TimedOut, t0 + 300 * MS, &c, &q);
        assert_eq!(s, up(2));
        let Step::Reply(r) = a.finish(Outcome::TimedOut, t0 + 700 * MS, &c, &q) else {
            panic!("past the deadline, upstream 3 is not asked");
        };
        assert_eq!(r, message::servfail(&q));

        let (mut a, _) = Attempts::start(t0, &c, &q, "udp");
        let fail = answer(&q, message::RCODE_SERVFAIL);
        a.finish(Outcome::Answer(fail.clone()), t0 + MS, &c, &q);
        a.finish(
            Outcome::Failed(io::ErrorKind::ConnectionRefused.into()),
            t0 + 2 * MS,
            &c,
            &q,
        );
        let s = a.finish(Outcome::TimedOut, t0 + 302 * MS, &c, &q);
        assert_eq!(
            s,
            Step::Reply(fail),
            "the last answer beats SERVFAIL of our own"
        );
    }

    #[test]
    fn no_upstreams_or_all_failing_at_once_answer_at_once() {
        let (q, t0) = (query(), Instant::now());
        let (_, s) = Attempts::start(t0, &cfg(0), &q, "udp");
        assert_eq!(s, Step::Reply(message::servfail(&q)));
        let c = cfg(2);
        let (mut a, s) = Attempts::start(t0, &c, &q, "udp");
        let mut asked = Vec::new();
        let r = a.begin(s, t0, &c, &q, |u| {
            asked.push(u.port());
            Err::<(), _>(io::Error::other("no socket"))
        });
        assert_eq!(r.unwrap_err(), message::servfail(&q));
        assert_eq!(asked, [1, 2]);
        let (mut a, s) = Attempts::start(t0, &c, &q, "udp");
        let r = a.begin(s, t0, &c, &q, |u| {
            if u.port() == 1 {
                Err(io::ErrorKind::ConnectionRefused.into())
            } else {
                Ok("socket")
            }
        });
        assert_eq!(
            r.unwrap(),
            (SocketAddr::from(([127, 0, 0, 1], 2)), "socket")
        );
    }
}
