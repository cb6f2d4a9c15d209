//! One client's TCP connection: queries read one after the other, each asked of the
//! upstreams in turn over TCP, the reply written back. Closed when the client goes,
//! sends garbage, or is idle too long. An idle connection holds no buffer.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::attempts::{Attempts, Outcome};
use super::frame::{Frame, FrameReader, FrameWriter};
use super::{message, net, Config, MAX_QUERY};
use crate::reactor::{after, Interest};

/// How long a client connection may wait for its next query to arrive whole, and
/// for its reply to be taken.
pub const TCP_IDLE: Duration = Duration::from_secs(10);

pub struct Conn {
    client: TcpStream,
    state: State,
}

enum State {
    /// Waiting for the client's next query (until the deadline).
    Reading(FrameReader, Instant),
    /// Asking an upstream for `query`.
    Resolving {
        query: Vec<u8>,
        attempts: Attempts,
        up: Upstream,
    },
    /// Writing the reply (until the deadline).
    Writing(FrameWriter, Instant),
}

/// The TCP exchange with one upstream.
struct Upstream {
    stream: TcpStream,
    /// Sending the query (the connection may still be under way), then reading.
    sending: Option<FrameWriter>,
    answer: FrameReader,
}

impl Upstream {
    fn ask(up: SocketAddr, query: &[u8]) -> io::Result<Upstream> {
        let sending = FrameWriter::new(query)?;
        Ok(Upstream {
            stream: net::connect_tcp(up)?,
            sending: Some(sending),
            answer: FrameReader::new(u16::MAX as usize),
        })
    }

    /// Moves the exchange on; `Some` once it has an outcome.
    fn service(&mut self, query: &[u8]) -> Option<Outcome> {
        if let Some(w) = &mut self.sending {
            // Until connected a write would block; a failed connect is its error.
            match w.write_to(&mut &self.stream) {
                Ok(true) => self.sending = None,
                Ok(false) => return None,
                Err(e) => return Some(Outcome::Failed(e)),
            }
        }
        loop {
            match self.answer.read_from(&mut &self.stream) {
                Ok(Frame::Pending) => return None,
                Ok(Frame::Message(resp)) if message::answers(&resp, query) => {
                    return Some(Outcome::Answer(resp))
                }
                Ok(Frame::Message(_)) => {}
                Ok(Frame::Closed) => {
                    return Some(Outcome::Failed(io::ErrorKind::UnexpectedEof.into()))
                }
                Err(e) => return Some(Outcome::Failed(e)),
            }
        }
    }
}

impl Conn {
    /// A client connection just accepted (nonblocking).
    pub fn new(client: TcpStream, now: Instant) -> Conn {
        Conn {
            client,
            state: State::Reading(FrameReader::new(MAX_QUERY), after(now, TCP_IDLE)),
        }
    }

    /// Waiting for a query with nothing of it read and no buffer held.
    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        matches!(&self.state, State::Reading(f, _) if f.is_idle())
    }

    pub fn register(&self, interest: &mut Interest) {
        match &self.state {
            State::Reading(..) => interest.read(self.client.as_raw_fd()),
            State::Resolving { up, .. } if up.sending.is_some() => {
                interest.write(up.stream.as_raw_fd())
            }
            State::Resolving { up, .. } => interest.read(up.stream.as_raw_fd()),
            State::Writing(..) => interest.write(self.client.as_raw_fd()),
        }
    }

    pub fn deadline(&self) -> Instant {
        match &self.state {
            State::Reading(_, until) | State::Writing(_, until) => *until,
            State::Resolving { attempts, .. } => attempts.attempt_deadline(),
        }
    }

    /// Moves the connection on; `false` when it is done (close it).
    pub fn service(&mut self, interest: &Interest, cfg: &Config, now: Instant) -> bool {
        match &mut self.state {
            State::Reading(frame, until) => {
                if interest.readable(self.client.as_raw_fd()) {
                    match frame.read_from(&mut &self.client) {
                        Ok(Frame::Pending) => {}
                        Ok(Frame::Message(q)) if message::is_query(&q) => {
                            return self.resolve(q, cfg, now)
                        }
                        // The client is gone, or sent what is no query.
                        Ok(_) | Err(_) => return false,
                    }
                }
                now < *until
            }
            State::Resolving {
                query,
                attempts,
                up,
            } => {
                let ready = interest.revents(up.stream.as_raw_fd()) != 0;
                let outcome = match ready.then(|| up.service(query)).flatten() {
                    Some(o) => o,
                    None if now >= attempts.attempt_deadline() => Outcome::TimedOut,
                    None => return true,
                };
                let step = attempts.finish(outcome, now, cfg, query);
                let q: &[u8] = query;
                match attempts.begin(step, now, cfg, q, |a| Upstream::ask(a, q)) {
                    Ok((_, next)) => {
                        *up = next;
                        true
                    }
                    Err(reply) => self.reply(&reply, now),
                }
            }
            State::Writing(w, until) => {
                if interest.writable(self.client.as_raw_fd()) {
                    match w.write_to(&mut &self.client) {
                        Ok(true) => {
                            self.state =
                                State::Reading(FrameReader::new(MAX_QUERY), after(now, TCP_IDLE));
                            return true;
                        }
                        Ok(false) => {}
                        Err(_) => return false,
                    }
                }
                now < *until
            }
        }
    }

    /// Starts asking the upstreams for `query`.
    fn resolve(&mut self, query: Vec<u8>, cfg: &Config, now: Instant) -> bool {
        let (mut attempts, step) = Attempts::start(now, cfg, &query, "tcp");
        match attempts.begin(step, now, cfg, &query, |a| Upstream::ask(a, &query)) {
            Ok((_, up)) => {
                self.state = State::Resolving {
                    query,
                    attempts,
                    up,
                };
                true
            }
            Err(reply) => self.reply(&reply, now),
        }
    }

    /// Writes `reply` to the client (what does not go at once waits for writability).
    fn reply(&mut self, reply: &[u8], now: Instant) -> bool {
        let Ok(mut w) = FrameWriter::new(reply) else {
            return false;
        };
        match w.write_to(&mut &self.client) {
            Ok(true) => {
                self.state = State::Reading(FrameReader::new(MAX_QUERY), after(now, TCP_IDLE));
                true
            }
            Ok(false) => {
                self.state = State::Writing(w, after(now, TCP_IDLE));
                true
            }
            Err(_) => false,
        }
    }
}
