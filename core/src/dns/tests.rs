//! The forwarder driven by a poll loop in the test's own thread, against a small
//! upstream on 127.0.0.1 (tests/dns_forwarder.rs in the root crate has the full set of
//! network cases).

use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Runs the forwarder's part of the poll loop for `dur`.
fn drive(fwd: &mut Forwarder, dur: Duration) {
    let end = Instant::now() + dur;
    let mut interest = Interest::default();
    while Instant::now() < end {
        interest.clear();
        fwd.register(Instant::now(), &mut interest);
        interest.poll(earliest(fwd.deadline(), Some(end))).unwrap();
        fwd.service(&interest, Instant::now());
    }
}

/// A query for `<label>.test A`.
fn query(id: u16, label: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.push(label.len() as u8);
    q.extend_from_slice(label.as_bytes());
    q.extend_from_slice(b"\x04test\x00\x00\x01\x00\x01");
    q
}

fn answer(q: &[u8]) -> Vec<u8> {
    let mut r = q.to_vec();
    r[2] |= 0x80;
    r[3] = 0x80;
    r
}

/// An upstream answering every UDP query (first a datagram with another ID, which
/// must be ignored) and one query per TCP connection; counts UDP queries.
fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            s.fetch_add(1, Ordering::SeqCst);
            let mut other = answer(&buf[..n]);
            other[0] ^= 0xff;
            let _ = udp.send_to(&other, from);
            let _ = udp.send_to(&answer(&buf[..n]), from);
        }
    });
    std::thread::spawn(move || {
        while let Ok((mut c, _)) = tcp.accept() {
            let mut len = [0u8; 2];
            c.read_exact(&mut len).unwrap();
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            c.read_exact(&mut q).unwrap();
            let r = answer(&q);
            c.write_all(&(r.len() as u16).to_be_bytes()).unwrap();
            c.write_all(&r).unwrap();
        }
    });
    (addr, seen)
}

fn config(upstreams: Vec<SocketAddr>) -> Config {
    Config {
        attempt_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_millis(700),
        ..Config::new("127.0.0.1:0".parse().unwrap(), upstreams)
    }
}

fn client() -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_nonblocking(true).unwrap();
    c
}

/// Drives the forwarder until `c` gets a datagram (at most `wait`).
fn reply(fwd: &mut Forwarder, c: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let end = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        drive(fwd, Duration::from_millis(10));
        if let Ok(n) = c.recv(&mut buf) {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

fn tcp_ask(fwd: &mut Forwarder, q: &[u8]) -> Option<Vec<u8>> {
    let mut c = TcpStream::connect(fwd.local_addr()).unwrap();
    c.set_nonblocking(true).unwrap();
    let mut f = (q.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(q);
    c.write_all(&f).unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        drive(fwd, Duration::from_millis(10));
        let mut buf = [0u8; 4096];
        if let Ok(n) = c.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        if got.len() >= 2 && got.len() == 2 + u16::from_be_bytes([got[0], got[1]]) as usize {
            return Some(got.split_off(2));
        }
    }
    None
}

#[test]
fn port_zero_serves_udp_and_tcp_on_one_port_and_idles_without_timers() {
    let fwd = Forwarder::bind(config(vec![])).unwrap();
    let addr = fwd.local_addr();
    assert_ne!(addr.port(), 0);
    let l = fwd.listeners.as_ref().unwrap();
    assert_eq!(l.tcp.local_addr().unwrap(), addr);
    assert_eq!(fwd.deadline(), None);
    let mut i = Interest::default();
    fwd.register(Instant::now(), &mut i);
    assert_eq!(i.fds.len(), 2);
}

#[test]
fn forwards_over_udp_and_tcp_and_frees_what_a_query_held() {
    let (up, seen) = upstream();
    let mut fwd = Forwarder::bind(config(vec![up])).unwrap();
    let c = client();
    let q = query(0x1234, "db");
    c.send_to(&q, fwd.local_addr()).unwrap();
    let r = reply(&mut fwd, &c, Duration::from_secs(2));
    assert_eq!(
        r.unwrap(),
        answer(&q),
        "the datagram with another ID was skipped"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert!(fwd.queries.is_empty());
    assert_eq!(tcp_ask(&mut fwd, &q).unwrap(), answer(&q));
    // The connection stays, idle, with no buffer and only its idle timer.
    assert_eq!(fwd.conns.len(), 1);
    assert!(fwd.conns[0].is_idle());
    let until = fwd.deadline().unwrap();
    assert!(until > Instant::now() + tcp::TCP_IDLE - Duration::from_secs(1));
}

#[test]
fn clients_using_the_same_id_each_get_their_own_answer() {
    let (up, seen) = upstream();
    let mut fwd = Forwarder::bind(config(vec![up])).unwrap();
    let (a, b) = (client(), client());
    let (qa, qb) = (query(0x4242, "one"), query(0x4242, "two"));
    a.send_to(&qa, fwd.local_addr()).unwrap();
    b.send_to(&qb, fwd.local_addr()).unwrap();
    // Both in flight before either is answered.
    let mut interest = Interest::default();
    fwd.register(Instant::now(), &mut interest);
    interest
        .poll(Some(Instant::now() + Duration::from_secs(1)))
        .unwrap();
    fwd.service(&interest, Instant::now());
    assert_eq!(fwd.queries.len(), 2);
    let wait = Duration::from_secs(2);
    assert_eq!(reply(&mut fwd, &a, wait).unwrap(), answer(&qa));
    assert_eq!(reply(&mut fwd, &b, wait).unwrap(), answer(&qb));
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[test]
fn without_upstreams_the_answer_is_servfail_at_once() {
    let mut fwd = Forwarder::bind(config(vec![])).unwrap();
    let c = client();
    let q = query(7, "db");
    c.send_to(&q, fwd.local_addr()).unwrap();
    let r = reply(&mut fwd, &c, Duration::from_millis(200)).unwrap();
    assert_eq!(r, message::servfail(&q));
    assert_eq!(tcp_ask(&mut fwd, &q).unwrap(), message::servfail(&q));
}

#[test]
fn a_serving_error_closes_and_listens_again_on_the_same_address() {
    let mut fwd = Forwarder::bind(config(vec![])).unwrap();
    let addr = fwd.local_addr();
    let tcp_fd = fwd.listeners.as_ref().unwrap().tcp.as_raw_fd();
    // A listening socket shut down fails every accept (EINVAL).
    // SAFETY: shutdown on a descriptor the forwarder owns and keeps open.
    assert_eq!(unsafe { libc::shutdown(tcp_fd, libc::SHUT_RDWR) }, 0);
    let t = Instant::now();
    drive(&mut fwd, Duration::from_millis(50));
    assert!(fwd.listeners.is_none(), "stopped");
    let (at, waited) = fwd.rebind.unwrap();
    assert_eq!(waited, REBIND_FIRST);
    assert!(at >= t + REBIND_FIRST && fwd.deadline() == Some(at));
    drive(
        &mut fwd,
        at.saturating_duration_since(Instant::now()) + Duration::from_millis(20),
    );
    assert!(
        fwd.listeners.is_some() && fwd.rebind.is_none(),
        "listening again"
    );
    assert_eq!(fwd.local_addr(), addr);
    let c = client();
    let q = query(8, "db");
    c.send_to(&q, addr).unwrap();
    assert!(reply(&mut fwd, &c, Duration::from_millis(200)).is_some());
    assert!(tcp_ask(&mut fwd, &q).is_some());
}

#[test]
fn rebinding_waits_longer_after_each_failure_up_to_ten_seconds() {
    let mut d = REBIND_FIRST;
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(d.as_millis());
        d = next_backoff(d);
    }
    assert_eq!(seen, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
}

#[test]
fn an_address_in_use_keeps_dockerd_off_the_forwarder() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let args: Vec<String> = ["--dns", "10.0.0.2", "--dns-opt", "attempts:2", "--debug"]
        .map(String::from)
        .to_vec();
    let dns_args = args[..4].to_vec();
    let cfg = Config::new(taken.local_addr().unwrap(), vec![]);
    let (fwd, got) = start_planned(cfg, &args, &dns_args);
    assert!(fwd.is_none());
    assert_eq!(got, ["--debug"]);
    let (fwd, got) = start_planned(config(vec![]), &args, &dns_args);
    assert!(fwd.is_some());
    assert_eq!(got, args);
}

#[test]
fn dockerd_args_drop_only_the_dns_flags_and_only_when_not_listening() {
    let args: Vec<String> = ["--dns", "10.0.0.2", "-H", "unix:///x"]
        .map(String::from)
        .to_vec();
    let dns = ["--dns".to_string(), "10.0.0.2".to_string()];
    assert_eq!(dockerd_args(&args, true, &dns), args);
    assert_eq!(dockerd_args(&args, false, &dns), ["-H", "unix:///x"]);
    assert_eq!(dockerd_args(&args, false, &[]), args);
}
