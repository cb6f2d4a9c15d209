//! One client's UDP query in flight: asked of each upstream in turn on a fresh socket
//! (a random source port per attempt; a late answer to an earlier attempt lands on a
//! closed socket). Everything it holds is freed when it ends.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::attempts::{Attempts, Outcome};
use super::{message, net, Config};
use crate::reactor::Interest;

/// Upstream answers are read whole whatever their size (EDNS lets them exceed 512).
const MAX_ANSWER: usize = u16::MAX as usize;

pub struct Query {
    pub client: SocketAddr,
    query: Vec<u8>,
    attempts: Attempts,
    /// The socket of the current attempt.
    sock: UdpSocket,
}

/// A query started, or already answered (every upstream failed at once).
pub enum Started {
    Asking(Query),
    Answered(Vec<u8>),
}

impl Query {
    /// Starts asking the upstreams for `query` (a query: see [`message::is_query`]).
    pub fn start(client: SocketAddr, query: Vec<u8>, cfg: &Config, now: Instant) -> Started {
        let (mut attempts, step) = Attempts::start(now, cfg, &query, "udp");
        match attempts.begin(step, now, cfg, &query, |up| ask(up, &query)) {
            Ok((_, sock)) => Started::Asking(Query {
                client,
                query,
                attempts,
                sock,
            }),
            Err(reply) => Started::Answered(reply),
        }
    }

    pub fn register(&self, interest: &mut Interest) {
        interest.read(self.sock.as_raw_fd());
    }

    pub fn deadline(&self) -> Instant {
        self.attempts.attempt_deadline()
    }

    /// Reads the upstream's answer if one came, moves on at the attempt deadline;
    /// `Some(reply)` when the client's reply is known.
    pub fn service(&mut self, interest: &Interest, cfg: &Config, now: Instant) -> Option<Vec<u8>> {
        let outcome = match interest
            .readable(self.sock.as_raw_fd())
            .then(|| self.read_answer())
            .flatten()
        {
            Some(o) => o,
            None if now >= self.attempts.attempt_deadline() => Outcome::TimedOut,
            None => return None,
        };
        let step = self.attempts.finish(outcome, now, cfg, &self.query);
        let query = &self.query;
        match self
            .attempts
            .begin(step, now, cfg, query, |up| ask(up, query))
        {
            Ok((_, sock)) => {
                self.sock = sock;
                None
            }
            Err(reply) => Some(reply),
        }
    }

    /// The attempt's outcome if it has one: the first datagram that answers the query,
    /// or the socket's error (an ICMP refusal from the upstream among them).
    fn read_answer(&mut self) -> Option<Outcome> {
        loop {
            match net::recv_sized(&self.sock, MAX_ANSWER) {
                Ok(Some((resp, _))) if message::answers(&resp, &self.query) => {
                    return Some(Outcome::Answer(resp))
                }
                // Not ours (another ID, oversized): ignored.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Outcome::Failed(e)),
            }
        }
    }
}

/// Sends `query` to `up` from a fresh socket.
fn ask(up: SocketAddr, query: &[u8]) -> io::Result<UdpSocket> {
    let sock = net::udp_to(up)?;
    sock.send(query)?;
    Ok(sock)
}
