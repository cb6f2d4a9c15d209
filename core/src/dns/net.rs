//! Nonblocking socket plumbing the forwarder needs beyond `std::net`: a datagram read
//! into a buffer of exactly its size, a fresh upstream UDP socket, a TCP connect that
//! does not wait, and which errors concern one peer rather than the socket.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Errors on a socket that concern one peer or one call, not the socket.
pub fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(libc::EHOSTUNREACH)
        || e.raw_os_error() == Some(libc::ENETUNREACH)
}

/// The length of the next datagram waiting on `sock` without reading it (MSG_TRUNC
/// gives the real length even for a 1-byte buffer); `WouldBlock` when none waits.
fn peek_len(sock: &UdpSocket) -> io::Result<usize> {
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
}

/// Receives the next datagram into a buffer of exactly its size, or `Ok(None)` (the
/// datagram discarded, nothing allocated) when it is larger than `max`.
/// `WouldBlock` when none waits.
pub fn recv_sized(sock: &UdpSocket, max: usize) -> io::Result<Option<(Vec<u8>, SocketAddr)>> {
    let len = peek_len(sock)?;
    if len > max {
        // A 1-byte read takes the datagram off the queue; the rest is dropped.
        let mut b = [0u8; 1];
        sock.recv_from(&mut b)?;
        return Ok(None);
    }
    let mut buf = vec![0u8; len];
    let (n, from) = sock.recv_from(&mut buf)?;
    buf.truncate(n);
    Ok(Some((buf, from)))
}

fn unspecified_for(up: SocketAddr) -> SocketAddr {
    match up {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// A fresh nonblocking UDP socket connected to `up` (a random source port per
/// attempt, and ICMP errors from `up` reported on it).
pub fn udp_to(up: SocketAddr) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(unspecified_for(up))?;
    sock.set_nonblocking(true)?;
    sock.connect(up)?;
    Ok(sock)
}

/// Starts a TCP connection to `to` without waiting for it: the socket becomes
/// writable when it is established, and a write then reports a failure.
pub fn connect_tcp(to: SocketAddr) -> io::Result<TcpStream> {
    let family = match to {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain syscall with constant arguments.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let (addr, len) = sockaddr(to);
    // SAFETY: `addr` is a valid sockaddr of `len` bytes for the socket's family.
    let r = unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_storage).cast(), len) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(TcpStream::from(sock))
}

/// `to` as the kernel takes it.
fn sockaddr(to: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    match to {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe {
                (&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            (
                storage,
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe {
                (&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            (
                storage,
                mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    #[test]
    fn datagrams_are_read_at_their_size_and_oversized_ones_dropped() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        assert_eq!(
            recv_sized(&rx, 10).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for m in [&b"hello"[..], &[7u8; 11][..], &[][..], &b"after"[..]] {
            tx.send_to(m, to).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        let from = tx.local_addr().unwrap();
        let (m, f) = recv_sized(&rx, 10).unwrap().unwrap();
        assert_eq!((m.as_slice(), m.capacity(), f), (&b"hello"[..], 5, from));
        assert!(recv_sized(&rx, 10).unwrap().is_none(), "11 bytes > 10");
        assert_eq!(recv_sized(&rx, 10).unwrap().unwrap().0, b"");
        assert_eq!(recv_sized(&rx, 10).unwrap().unwrap().0, b"after");
    }

    #[test]
    fn tcp_connects_without_waiting_v4_and_v6() {
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(l) = TcpListener::bind(host) else {
                continue; // no IPv6 loopback here
            };
            let mut c = connect_tcp(l.local_addr().unwrap()).unwrap();
            let (mut s, peer) = l.accept().unwrap();
            assert_eq!(peer, c.local_addr().unwrap());
            let t = Instant::now();
            loop {
                match c.write(b"x") {
                    Ok(1) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(t.elapsed() < Duration::from_secs(2));
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    r => panic!("{r:?}"),
                }
            }
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"x");
        }
    }

    #[test]
    fn a_refused_connection_is_an_error_on_the_first_write() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is gone: nobody listens on `port` any more.
        let r = connect_tcp(port).and_then(|mut c| {
            let t = Instant::now();
            loop {
                match c.write(b"x") {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(t.elapsed() < Duration::from_secs(2));
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    r => return r,
                }
            }
        });
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    }
}
