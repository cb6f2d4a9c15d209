//! Serving: UDP and TCP on the listen address, each query asked of the upstreams in order.
//!
//! Memory stays small and bounded: no cache, no per-query buffer of fixed size (a datagram's
//! length is peeked first and exactly that much is allocated), at most `max_udp_inflight`
//! UDP queries and `max_tcp_conns` TCP connections at a time; more are dropped (UDP) or
//! closed (TCP), and the client retries.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::{timeout, timeout_at, Instant};

use super::message;
use super::Config;

/// Largest query accepted, over UDP or TCP (real queries are far smaller; larger is garbage
/// or an attempt to make us hold memory).
pub const MAX_UDP_QUERY: usize = 4096;
/// How long an idle TCP client connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The length of the next datagram waiting on `sock` without reading it (MSG_TRUNC
/// gives the real length even for a zero-byte buffer).
fn peek_len(sock: &UdpSocket) -> io::Result<usize> {
    sock.try_io(tokio::io::Interest::READABLE, || {
        let mut b = [0u8; 1];
        // SAFETY: a valid fd and a 1-byte buffer we own; the kernel writes at most 1 byte.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                b.as_mut_ptr().cast(),
                b.len(),
                libc::MSG_PEEK | libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// Receives the next datagram into a buffer of exactly its size, or `Ok(None)` (the
/// datagram discarded) when it is larger than `max`.
async fn recv_sized(sock: &UdpSocket, max: usize) -> io::Result<Option<(Vec<u8>, SocketAddr)>> {
    loop {
        sock.readable().await?;
        let len = match peek_len(sock) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; len.min(max + 1).max(1)];
        match sock.try_recv_from(&mut buf) {
            Ok((n, from)) if len <= max => {
                buf.truncate(n);
                return Ok(Some((buf, from)));
            }
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Errors on a UDP socket that concern one peer, not the socket.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(libc::EHOSTUNREACH)
        || e.raw_os_error() == Some(libc::ENETUNREACH)
}

/// The UDP server loop; returns only on a socket error (the caller rebinds).
pub async fn serve_udp(sock: Arc<UdpSocket>, cfg: Arc<Config>) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(cfg.max_udp_inflight));
    loop {
        let (query, client) = match recv_sized(&sock, MAX_UDP_QUERY).await {
            Ok(Some(q)) => q,
            Ok(None) => continue,
            Err(e) if transient(&e) => continue,
            Err(e) => return Err(e),
        };
        if !message::is_query(&query) {
            continue;
        }
        // Beyond the bound the query is dropped: the client's retry comes later.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let sock = sock.clone();
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let resp = resolve_udp(&query, &cfg).await;
            let _ = sock.send_to(&resp, client).await;
            drop(permit);
        });
    }
}

/// Asks each upstream in turn; the first answer that is not SERVFAIL/REFUSED wins
/// (TC included: the client then retries over TCP). SERVFAIL at the deadline.
pub async fn resolve_udp(query: &[u8], cfg: &Config) -> Vec<u8> {
    let deadline = Instant::now() + cfg.total_timeout;
    let mut last = None;
    for up in &cfg.upstreams {
        let attempt = (Instant::now() + cfg.attempt_timeout).min(deadline);
        match timeout_at(attempt, ask_udp(*up, query)).await {
            Ok(Ok(resp)) if is_final(&resp) => return resp,
            Ok(Ok(resp)) => last = Some(resp),
            Ok(Err(e)) => tracing::debug!("dns: upstream {up} (udp): {e}"),
            Err(_) => tracing::debug!("dns: upstream {up} (udp) did not answer in time"),
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    last.unwrap_or_else(|| message::servfail(query))
}

fn is_final(resp: &[u8]) -> bool {
    !matches!(
        message::rcode(resp),
        message::RCODE_SERVFAIL | message::RCODE_REFUSED
    )
}

fn unspecified_for(up: SocketAddr) -> SocketAddr {
    match up {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// One UDP exchange on a fresh socket (a random source port per query); datagrams
/// that do not answer this query are ignored.
async fn ask_udp(up: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let sock = UdpSocket::bind(unspecified_for(up)).await?;
    sock.connect(up).await?;
    sock.send(query).await?;
    loop {
        match recv_sized(&sock, u16::MAX as usize).await? {
            Some((resp, _)) if message::answers(&resp, query) => return Ok(resp),
            _ => continue,
        }
    }
}

/// The TCP server loop; returns only on a listener error (the caller rebinds).
pub async fn serve_tcp(listener: Arc<TcpListener>, cfg: Arc<Config>) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(cfg.max_tcp_conns));
    loop {
        let (conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) if transient(&e) || e.kind() == io::ErrorKind::ConnectionAborted => continue,
            // Out of fds: wait a little instead of spinning.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(conn);
            continue;
        };
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let _ = serve_tcp_client(conn, &cfg).await;
            drop(permit);
        });
    }
}

/// Reads a length-prefixed message of at most `max` bytes; `Ok(None)` at a clean end of
/// stream. A longer one is an error before anything is allocated for it.
async fn read_framed(conn: &mut TcpStream, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match conn.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u16::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len}-byte message"),
        ));
    }
    let mut msg = vec![0u8; len];
    conn.read_exact(&mut msg).await?;
    Ok(Some(msg))
}

async fn write_framed(conn: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| io::Error::other("message too long"))?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    conn.write_all(&framed).await
}

/// Queries on one client connection, one after the other, until it is idle or sends garbage.
async fn serve_tcp_client(mut conn: TcpStream, cfg: &Config) -> io::Result<()> {
    loop {
        let query = match timeout(TCP_IDLE, read_framed(&mut conn, MAX_UDP_QUERY)).await {
            Ok(Ok(Some(q))) if message::is_query(&q) => q,
            _ => return Ok(()),
        };
        let resp = resolve_tcp(&query, cfg).await;
        write_framed(&mut conn, &resp).await?;
    }
}

async fn resolve_tcp(query: &[u8], cfg: &Config) -> Vec<u8> {
    let deadline = Instant::now() + cfg.total_timeout;
    let mut last = None;
    for up in &cfg.upstreams {
        let attempt = (Instant::now() + cfg.attempt_timeout).min(deadline);
        match timeout_at(attempt, ask_tcp(*up, query)).await {
            Ok(Ok(resp)) if is_final(&resp) => return resp,
            Ok(Ok(resp)) => last = Some(resp),
            Ok(Err(e)) => tracing::debug!("dns: upstream {up} (tcp): {e}"),
            Err(_) => tracing::debug!("dns: upstream {up} (tcp) did not answer in time"),
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    last.unwrap_or_else(|| message::servfail(query))
}

async fn ask_tcp(up: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(up).await?;
    write_framed(&mut conn, query).await?;
    loop {
        match read_framed(&mut conn, u16::MAX as usize).await? {
            Some(resp) if message::answers(&resp, query) => return Ok(resp),
            Some(_) => continue,
            None => return Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}
