//! Inner DNS (design §4): a small forwarder that inner containers reach on the
//! workspace's own address, given to dockerd as `--dns`. It asks the workspace's
//! resolvers (loopback ones such as Docker's 127.0.0.11 included) in order. The plan
//! decides whether it runs and where; this module only serves, driven by the core's
//! `poll` loop ([`Forwarder::register`], [`Forwarder::deadline`], [`Forwarder::service`]).
//!
//! Memory stays small and bounded: no cache; a query's buffers exist only while it is
//! in flight and are sized to what arrived (a datagram's length is peeked first);
//! at most `max_udp_inflight` UDP queries and `max_tcp_conns` TCP connections at a
//! time; more are dropped (UDP) or closed (TCP), and the client retries.

mod attempts;
mod frame;
pub mod message;
mod net;
mod tcp;
mod udp;

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::reactor::{after, earliest, Interest};

/// Largest query accepted, over UDP or TCP (real queries are far smaller; larger is
/// garbage or an attempt to make us hold memory).
pub const MAX_QUERY: usize = 4096;
/// Datagrams read or connections accepted per `service` call, so a flood cannot keep
/// the loop from the rest of PID 1's work (poll reports the rest at once).
const BURST: usize = 64;
/// The first wait before listening again after a serving error; doubled up to
/// [`REBIND_MAX`] while binding fails.
const REBIND_FIRST: Duration = Duration::from_millis(500);
const REBIND_MAX: Duration = Duration::from_secs(10);
/// Accepting pauses this long when the process is out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Forwarder settings; [`Config::new`] has the production limits.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub upstreams: Vec<SocketAddr>,
    /// How long one upstream gets before the next is asked.
    pub attempt_timeout: Duration,
    /// When the client gets SERVFAIL at the latest: below the 4 s dockerd's embedded
    /// resolver waits for us, and the 5 s glibc waits.
    pub total_timeout: Duration,
    pub max_udp_inflight: usize,
    pub max_tcp_conns: usize,
}

impl Config {
    pub fn new(listen: SocketAddr, upstreams: Vec<SocketAddr>) -> Config {
        Config {
            listen,
            upstreams,
            attempt_timeout: Duration::from_millis(1500),
            total_timeout: Duration::from_secs(3),
            max_udp_inflight: 64,
            max_tcp_conns: 16,
        }
    }
}

/// The listening sockets.
struct Listeners {
    udp: UdpSocket,
    tcp: TcpListener,
}

/// Binds UDP and TCP on the same address (with port 0, the port UDP got), nonblocking.
fn bind(listen: SocketAddr) -> io::Result<Listeners> {
    let udp = UdpSocket::bind(listen)?;
    udp.set_nonblocking(true)?;
    let port = udp.local_addr()?.port();
    let tcp = TcpListener::bind(SocketAddr::new(listen.ip(), port))?;
    tcp.set_nonblocking(true)?;
    Ok(Listeners { udp, tcp })
}

/// The wait before the next try after a failed one that waited `last`.
pub fn next_backoff(last: Duration) -> Duration {
    (last * 2).min(REBIND_MAX)
}

/// The forwarder: its listening sockets, the queries in flight and the client
/// connections. Never blocks, never panics on what the network sends.
pub struct Forwarder {
    /// `listen` is the bound address (port 0 resolved).
    cfg: Config,
    /// `None` after a serving error, until listening works again.
    listeners: Option<Listeners>,
    /// After a serving error: when to try listening again, and the wait that led there.
    rebind: Option<(Instant, Duration)>,
    /// Out of descriptors: no accepting before then.
    accept_paused: Option<Instant>,
    queries: Vec<udp::Query>,
    conns: Vec<tcp::Conn>,
}

impl Forwarder {
    /// Binds UDP, then TCP on the same port; the caller learns at once whether the
    /// forwarder can listen.
    pub fn bind(cfg: Config) -> io::Result<Forwarder> {
        let listeners = bind(cfg.listen)?;
        let listen = listeners.udp.local_addr()?;
        Ok(Forwarder {
            cfg: Config { listen, ..cfg },
            listeners: Some(listeners),
            rebind: None,
            accept_paused: None,
            queries: Vec::new(),
            conns: Vec::new(),
        })
    }

    /// The address it serves on (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.cfg.listen
    }

    /// Asks for the descriptors it waits on.
    pub fn register(&self, now: Instant, interest: &mut Interest) {
        if let Some(l) = &self.listeners {
            interest.read(l.udp.as_raw_fd());
            if self.accept_paused.map_or(true, |t| now >= t) {
                interest.read(l.tcp.as_raw_fd());
            }
        }
        for q in &self.queries {
            q.register(interest);
        }
        for c in &self.conns {
            c.register(interest);
        }
    }

    /// Its next timer: an attempt or a client connection timing out, listening again,
    /// accepting again. `None` when only the network can wake it.
    pub fn deadline(&self) -> Option<Instant> {
        let timers = self.queries.iter().map(udp::Query::deadline);
        let timers = timers.chain(self.conns.iter().map(tcp::Conn::deadline));
        let mut at = timers.min();
        at = earliest(at, self.rebind.map(|(t, _)| t));
        earliest(at, self.accept_paused)
    }

    /// Handles what `poll` reported and the timers due at `now`.
    pub fn service(&mut self, interest: &Interest, now: Instant) {
        // What was in flight first, then what is new: a descriptor closed here and
        // reused for a new socket at once is not taken for one `poll` reported on.
        self.service_queries(interest, now);
        let cfg = &self.cfg;
        self.conns.retain_mut(|c| c.service(interest, cfg, now));
        if self.accept_paused.is_some_and(|t| now >= t) {
            self.accept_paused = None;
        }
        let (udp, tcp) = match &self.listeners {
            Some(l) => (
                interest.readable(l.udp.as_raw_fd()),
                interest.readable(l.tcp.as_raw_fd()),
            ),
            None => (false, false),
        };
        let mut failed = None;
        if udp {
            failed = self.receive(now).err().map(|e| format!("udp: {e}"));
        }
        if tcp && failed.is_none() {
            failed = self.accept(now).err().map(|e| format!("tcp: {e}"));
        }
        if let Some(why) = failed {
            warn!(
                "inner DNS forwarder on {} stopped ({why}); restarting it",
                self.cfg.listen
            );
            self.listeners = None;
            self.rebind = Some((after(now, REBIND_FIRST), REBIND_FIRST));
        }
        self.rebind_if_due(now);
        // After a burst, the lists give their memory back.
        if self.queries.is_empty() && self.queries.capacity() > 4 {
            self.queries.shrink_to_fit();
        }
        if self.conns.is_empty() && self.conns.capacity() > 4 {
            self.conns.shrink_to_fit();
        }
    }

    fn service_queries(&mut self, interest: &Interest, now: Instant) {
        let mut i = 0;
        while i < self.queries.len() {
            match self.queries[i].service(interest, &self.cfg, now) {
                None => i += 1,
                Some(reply) => {
                    let q = self.queries.swap_remove(i);
                    self.answer(q.client, &reply);
                }
            }
        }
    }

    /// Sends `reply` to a UDP client; lost if it cannot go at once (the client retries).
    fn answer(&self, client: SocketAddr, reply: &[u8]) {
        let Some(l) = &self.listeners else { return };
        if let Err(e) = l.udp.send_to(reply, client) {
            debug!("dns: cannot answer {client} (udp): {e}");
        }
    }

    /// Takes the datagrams waiting on the UDP socket; `Err` on a serving error.
    fn receive(&mut self, now: Instant) -> io::Result<()> {
        for _ in 0..BURST {
            let Some(l) = &self.listeners else {
                return Ok(());
            };
            let (query, client) = match net::recv_sized(&l.udp, MAX_QUERY) {
                Ok(Some(q)) => q,
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if net::transient(&e) => continue,
                Err(e) => return Err(e),
            };
            // A response arriving here is never forwarded: no loops, no reflection.
            if !message::is_query(&query) {
                continue;
            }
            // Beyond the bound the query is dropped: the client's retry comes later.
            if self.queries.len() >= self.cfg.max_udp_inflight {
                continue;
            }
            match udp::Query::start(client, query, &self.cfg, now) {
                udp::Started::Asking(q) => self.queries.push(q),
                udp::Started::Answered(reply) => self.answer(client, &reply),
            }
        }
        Ok(())
    }

    /// Accepts waiting connections; `Err` on a serving error.
    fn accept(&mut self, now: Instant) -> io::Result<()> {
        if self.accept_paused.is_some() {
            return Ok(());
        }
        for _ in 0..BURST {
            let Some(l) = &self.listeners else {
                return Ok(());
            };
            let conn = match l.tcp.accept() {
                Ok((c, _)) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if net::transient(&e) || e.kind() == io::ErrorKind::ConnectionAborted => {
                    continue
                }
                // Out of descriptors: wait a little instead of spinning.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    self.accept_paused = Some(after(now, ACCEPT_PAUSE));
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            // Beyond the bound the connection is closed at once.
            if self.conns.len() >= self.cfg.max_tcp_conns || conn.set_nonblocking(true).is_err() {
                continue;
            }
            self.conns.push(tcp::Conn::new(conn, now));
        }
        Ok(())
    }

    fn rebind_if_due(&mut self, now: Instant) {
        let Some((at, waited)) = self.rebind else {
            return;
        };
        if now < at {
            return;
        }
        let addr = self.cfg.listen;
        match bind(addr) {
            Ok(l) => {
                info!("inner DNS forwarder listens on {addr} again");
                self.listeners = Some(l);
                self.rebind = None;
            }
            Err(e) => {
                warn!("inner DNS forwarder: cannot listen on {addr} again: {e}");
                let wait = next_backoff(waited);
                self.rebind = Some((after(now, wait), wait));
            }
        }
    }
}

/// Binds the forwarder for inner containers and says so, or warns that they get
/// dockerd's default DNS instead: `None` then.
pub fn start(cfg: Config) -> Option<Forwarder> {
    let listen = cfg.listen;
    match Forwarder::bind(cfg) {
        Ok(f) => {
            let ups: Vec<String> = f.cfg.upstreams.iter().map(|u| u.to_string()).collect();
            info!(
                "inner DNS: forwarding {} (udp, tcp) to {} for inner containers",
                f.local_addr(),
                ups.join(", ")
            );
            Some(f)
        }
        Err(e) => {
            warn!(
                "inner DNS: cannot listen on {listen}: {e}; inner containers get dockerd's default DNS (which cannot reach the workspace's loopback resolvers)"
            );
            None
        }
    }
}

/// dockerd's arguments: `args` as planned while the forwarder listens, else without
/// the plan's DNS flags (`dns_args`), so dockerd's own defaults apply instead of a
/// server that does not answer.
pub fn dockerd_args(args: &[String], listening: bool, dns_args: &[String]) -> Vec<String> {
    if listening {
        return args.to_vec();
    }
    args.iter()
        .filter(|a| !dns_args.contains(a))
        .cloned()
        .collect()
}

/// [`start`], then [`dockerd_args`]: the forwarder (if it listens) and dockerd's
/// arguments.
pub fn start_planned(
    cfg: Config,
    args: &[String],
    dns_args: &[String],
) -> (Option<Forwarder>, Vec<String>) {
    let fwd = start(cfg);
    let args = dockerd_args(args, fwd.is_some(), dns_args);
    (fwd, args)
}

#[cfg(test)]
mod tests;
