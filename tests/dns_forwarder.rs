//! The inner DNS forwarder (ws-init-core's, driven by a poll loop in a thread of its
//! own) against a tiny test upstream, all on 127.0.0.1: answers, truncation passed
//! through, TCP, garbage and oversized packets, a flood beyond the in-flight bound, and
//! dead upstreams (SERVFAIL within the deadline).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use ws_init_core::dns::{Config, Forwarder};
use ws_init_core::reactor::Interest;

const RCODE_SERVFAIL: u8 = 2;

/// A query for `<label>.test A` with the given ID.
fn query(id: u16, label: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.push(label.len() as u8);
    q.extend_from_slice(label.as_bytes());
    q.extend_from_slice(b"\x04test\x00\x00\x01\x00\x01");
    q
}

fn has(q: &[u8], label: &str) -> bool {
    let mut l = vec![label.len() as u8];
    l.extend_from_slice(label.as_bytes());
    q.windows(l.len()).any(|w| w == l)
}

/// The upstream's answer: the query with QR, RA, and for `big` 3000 bytes of payload
/// over TCP or TC set over UDP; `fail` gets SERVFAIL.
fn answer(q: &[u8], tcp: bool) -> Vec<u8> {
    let mut r = q.to_vec();
    r[2] |= 0x80;
    r[3] = 0x80;
    if has(q, "big") {
        if tcp {
            r.extend(std::iter::repeat(0xab).take(3000));
        } else {
            r[2] |= 0x02;
        }
    }
    if has(q, "fail") {
        r[3] |= RCODE_SERVFAIL;
    }
    r
}

/// Counts of what the test upstream received.
#[derive(Default)]
struct Seen {
    udp: AtomicUsize,
    tcp: AtomicUsize,
    slow: AtomicUsize,
}

/// A test upstream on 127.0.0.1 (UDP and TCP, one port). `silent` never answers.
async fn upstream(silent: bool) -> (SocketAddr, Arc<Seen>) {
    let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, from) = udp.recv_from(&mut buf).await.unwrap();
            s.udp.fetch_add(1, Ordering::SeqCst);
            let q = buf[..n].to_vec();
            if silent || q.len() < 12 {
                continue;
            }
            let udp = udp.clone();
            let s = s.clone();
            tokio::spawn(async move {
                if has(&q, "slow") {
                    s.slow.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                let _ = udp.send_to(&answer(&q, false), from).await;
            });
        }
    });
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = tcp.accept().await.unwrap();
            s.tcp.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                while let Some(q) = read_framed(&mut c).await {
                    if silent {
                        continue;
                    }
                    write_framed(&mut c, &answer(&q, true)).await;
                }
            });
        }
    });
    (addr, seen)
}

async fn read_framed(c: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    c.read_exact(&mut len).await.ok()?;
    let mut m = vec![0u8; u16::from_be_bytes(len) as usize];
    c.read_exact(&mut m).await.ok()?;
    Some(m)
}

async fn write_framed(c: &mut TcpStream, m: &[u8]) {
    let mut f = (m.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(m);
    c.write_all(&f).await.unwrap();
}

/// Binds the forwarder and drives it as the core's poll loop does, in a thread that
/// lives as long as the test program.
fn start(cfg: Config) -> std::io::Result<SocketAddr> {
    Ok(serve(Forwarder::bind(cfg)?))
}

/// Drives a bound forwarder in a thread, as `start` does.
fn serve(mut fwd: Forwarder) -> SocketAddr {
    let addr = fwd.local_addr();
    std::thread::spawn(move || {
        let mut interest = Interest::default();
        loop {
            interest.clear();
            fwd.register(Instant::now(), &mut interest);
            interest.poll(fwd.deadline()).unwrap();
            fwd.service(&interest, Instant::now());
        }
    });
    addr
}

/// Short timeouts so dead upstreams cost little test time.
fn config(upstreams: Vec<SocketAddr>) -> Config {
    Config {
        attempt_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_millis(700),
        max_udp_inflight: 4,
        max_tcp_conns: 2,
        ..Config::new("127.0.0.1:0".parse().unwrap(), upstreams)
    }
}

/// One UDP exchange with the forwarder; `None` when nothing comes within `wait`.
async fn ask(fwd: SocketAddr, q: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(q, fwd).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(wait, s.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(buf[..n].to_vec())
}

async fn ask_tcp(fwd: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let mut c = TcpStream::connect(fwd).await.unwrap();
    write_framed(&mut c, q).await;
    tokio::time::timeout(Duration::from_secs(3), read_framed(&mut c))
        .await
        .ok()?
}

const WAIT: Duration = Duration::from_secs(3);

#[tokio::test]
async fn answers_over_udp_and_tcp_and_passes_truncation_through() {
    let (up, _) = upstream(false).await;
    let fwd = start(config(vec![up])).unwrap();
    let q = query(0x1234, "db");
    assert_eq!(ask(fwd, &q, WAIT).await.unwrap(), answer(&q, false));
    // Truncated over UDP: TC reaches the client, which retries over TCP and gets it all.
    let big = query(0x4321, "big");
    let r = ask(fwd, &big, WAIT).await.unwrap();
    assert_eq!(r[2] & 0x02, 0x02, "TC bit passed through");
    let r = ask_tcp(fwd, &big).await.unwrap();
    assert_eq!(r.len(), big.len() + 3000);
    assert_eq!(r, answer(&big, true));
    // Two queries on one TCP connection.
    let mut c = TcpStream::connect(fwd).await.unwrap();
    for id in [1u16, 2] {
        let q = query(id, "db");
        write_framed(&mut c, &q).await;
        assert_eq!(read_framed(&mut c).await.unwrap(), answer(&q, true));
    }
}

#[tokio::test]
async fn survives_garbage_and_oversized_packets() {
    let (up, seen) = upstream(false).await;
    let fwd = start(config(vec![up])).unwrap();
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut response = query(7, "db");
    response[2] |= 0x80;
    for junk in [
        vec![],
        b"hello".to_vec(),
        response,
        vec![0u8; 5000],
        vec![0xff; 60000],
    ] {
        s.send_to(&junk, fwd).await.unwrap();
    }
    // A header-sized message with a nonsense body is a query: forwarded, answered.
    let odd = vec![0x55, 0x55, 0x01, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0xc0];
    assert!(ask(fwd, &odd, WAIT).await.is_some());
    assert_eq!(
        seen.udp.load(Ordering::SeqCst),
        1,
        "only the query-shaped one went upstream"
    );
    // TCP garbage: a short message and a length promising more than is sent.
    let mut c = TcpStream::connect(fwd).await.unwrap();
    c.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    let mut b = [0u8; 1];
    let closed = tokio::time::timeout(WAIT, c.read(&mut b)).await.unwrap();
    assert!(matches!(closed, Ok(0) | Err(_)), "connection closed");
    // A length promising 65535 bytes: refused at once, not waited for.
    let mut c = TcpStream::connect(fwd).await.unwrap();
    c.write_all(&[0xff, 0xff, 1]).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(1), c.read(&mut b))
        .await
        .expect("closed before the idle timeout");
    assert!(matches!(closed, Ok(0) | Err(_)), "connection closed");
    // Still serving both ways.
    let q = query(9, "db");
    assert_eq!(ask(fwd, &q, WAIT).await.unwrap(), answer(&q, false));
    assert_eq!(ask_tcp(fwd, &q).await.unwrap(), answer(&q, true));
}

#[tokio::test]
async fn a_flood_beyond_the_bound_is_dropped_not_queued() {
    let (up, seen) = upstream(false).await;
    let fwd = start(config(vec![up])).unwrap();
    let mut clients = Vec::new();
    for id in 0..40u16 {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(&query(id, "slow"), fwd).await.unwrap();
        clients.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen.slow.load(Ordering::SeqCst),
        4,
        "at most max_udp_inflight queries go upstream at once"
    );
    // The four held ones end in SERVFAIL at the deadline; the rest got nothing.
    let mut answered = 0;
    for s in &clients {
        let mut buf = [0u8; 512];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(50), s.recv_from(&mut buf)).await
        {
            assert_eq!(buf[3] & 0x0f, RCODE_SERVFAIL, "{:?}", &buf[..n]);
            answered += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    for s in &clients {
        let mut buf = [0u8; 512];
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(20), s.recv_from(&mut buf)).await
        {
            assert_eq!(buf[3] & 0x0f, RCODE_SERVFAIL);
            answered += 1;
        }
    }
    assert_eq!(answered, 4);
    // Permits are back: a normal query works again.
    let q = query(99, "db");
    assert_eq!(ask(fwd, &q, WAIT).await.unwrap(), answer(&q, false));
}

#[tokio::test]
async fn dead_upstreams_give_servfail_in_time_and_the_next_one_is_asked() {
    let (silent, seen) = upstream(true).await;
    // A port nobody listens on: refused at once.
    let refused = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let cfg = config(vec![refused, silent]);
    let total = cfg.total_timeout;
    let fwd = start(cfg).unwrap();
    for tcp in [false, true] {
        let q = query(5, "db");
        let t = Instant::now();
        let r = if tcp {
            ask_tcp(fwd, &q).await
        } else {
            ask(fwd, &q, WAIT).await
        }
        .unwrap();
        let took = t.elapsed();
        assert_eq!(r[..2], q[..2], "same ID");
        assert_eq!(r[2] & 0x80, 0x80);
        assert_eq!(r[3] & 0x0f, RCODE_SERVFAIL, "tcp={tcp}");
        assert_eq!(&r[12..], &q[12..], "question echoed");
        assert!(
            took >= Duration::from_millis(250) && took < total + Duration::from_millis(300),
            "tcp={tcp}: SERVFAIL after {took:?}"
        );
    }
    assert!(seen.udp.load(Ordering::SeqCst) >= 1 && seen.tcp.load(Ordering::SeqCst) >= 1);

    // Dead first, alive second: the answer comes from the second after one attempt.
    let (alive, _) = upstream(false).await;
    let (silent2, _) = upstream(true).await;
    let fwd = start(config(vec![silent2, alive])).unwrap();
    let q = query(6, "db");
    let t = Instant::now();
    assert_eq!(ask(fwd, &q, WAIT).await.unwrap(), answer(&q, false));
    assert!(t.elapsed() >= Duration::from_millis(250));
    // Every upstream answers SERVFAIL: the client gets the last answer, not a timeout.
    let (failing, _) = upstream(false).await;
    let fwd = start(config(vec![failing, alive])).unwrap();
    let fail = query(8, "fail");
    let r = ask(fwd, &fail, WAIT).await.unwrap();
    assert_eq!(r[3] & 0x0f, RCODE_SERVFAIL, "both fail it: the last answer");
    let ok = query(10, "db");
    assert_eq!(ask(fwd, &ok, WAIT).await.unwrap(), answer(&ok, false));
}

/// What PID 1 does with the handed-over DNS plan: the forwarder serves, or
/// dockerd loses the flags that name it.
#[tokio::test]
async fn the_planned_forwarder_serves_or_dockerd_loses_its_dns_flags() {
    let (up, _) = upstream(false).await;
    let dns_args = |listen: SocketAddr| vec!["--dns".to_string(), listen.ip().to_string()];
    let args: Vec<String> = vec!["--dns".into(), "127.0.0.1".into(), "--debug".into()];
    // Taken: dockerd keeps its own DNS defaults.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap();
    let (fwd, got) =
        ws_init_core::dns::start_planned(Config::new(at, vec![up]), &args, &dns_args(at));
    assert!(fwd.is_none());
    assert_eq!(got, ["--debug"]);
    // Free: the arguments stay and the forwarder answers there.
    drop(taken);
    let (fwd, got) =
        ws_init_core::dns::start_planned(Config::new(at, vec![up]), &args, &dns_args(at));
    assert_eq!(got, args);
    let free = serve(fwd.expect("the address is free"));
    let q = query(0x77, "db");
    assert_eq!(ask(free, &q, WAIT).await.unwrap(), answer(&q, false));
}
