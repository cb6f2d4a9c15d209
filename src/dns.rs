//! Inner DNS (design §4): a small forwarder in ws-init that inner containers reach on the
//! workspace's own address, given to dockerd as `--dns`. It asks the workspace's resolvers
//! (loopback ones such as Docker's 127.0.0.11 included) in order. `plan::dns` decides
//! whether it runs; this module only serves.

pub mod forward;
pub mod message;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tracing::{info, warn};

use crate::plan::dns::DnsPlan;

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

/// Binds UDP and TCP on the same address (with port 0, the port UDP got).
fn bind(listen: SocketAddr) -> io::Result<(Arc<UdpSocket>, Arc<TcpListener>)> {
    let udp = std::net::UdpSocket::bind(listen)?;
    udp.set_nonblocking(true)?;
    let port = udp.local_addr()?.port();
    let tcp = std::net::TcpListener::bind(SocketAddr::new(listen.ip(), port))?;
    tcp.set_nonblocking(true)?;
    Ok((
        Arc::new(UdpSocket::from_std(udp)?),
        Arc::new(TcpListener::from_std(tcp)?),
    ))
}

/// Binds now (so the caller learns at once whether it can listen) and serves in a task
/// of the current runtime; a serving error rebinds the same address with backoff.
/// Returns the bound address.
pub fn start(cfg: Config) -> io::Result<SocketAddr> {
    let (udp, tcp) = bind(cfg.listen)?;
    let addr = udp.local_addr()?;
    let cfg = Arc::new(Config {
        listen: addr,
        ..cfg
    });
    tokio::spawn(supervise(udp, tcp, cfg));
    Ok(addr)
}

async fn supervise(mut udp: Arc<UdpSocket>, mut tcp: Arc<TcpListener>, cfg: Arc<Config>) {
    loop {
        let failed = tokio::select! {
            r = forward::serve_udp(udp, cfg.clone()) => r.err().map(|e| format!("udp: {e}")),
            r = forward::serve_tcp(tcp, cfg.clone()) => r.err().map(|e| format!("tcp: {e}")),
        };
        warn!(
            "inner DNS forwarder on {} stopped ({}); restarting it",
            cfg.listen,
            failed.as_deref().unwrap_or("no error")
        );
        let mut backoff = Duration::from_millis(500);
        (udp, tcp) = loop {
            tokio::time::sleep(backoff).await;
            match bind(cfg.listen) {
                Ok(s) => break s,
                Err(e) => {
                    warn!(
                        "inner DNS forwarder: cannot listen on {} again: {e}",
                        cfg.listen
                    );
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        };
        info!("inner DNS forwarder listens on {} again", cfg.listen);
    }
}

/// Starts the forwarder the plan asks for (if any) and returns dockerd's arguments: `args`
/// as planned, or without the plan's DNS flags when the forwarder cannot listen, so
/// dockerd's own defaults apply instead of a server that does not answer.
pub fn start_planned(dns: Option<&DnsPlan>, args: &[String]) -> Vec<String> {
    let Some((plan, fwd)) = dns.and_then(|d| d.forwarder.as_ref().map(|f| (d, f))) else {
        return args.to_vec();
    };
    match start(Config::new(fwd.listen, fwd.upstreams.clone())) {
        Ok(addr) => {
            let ups: Vec<String> = fwd.upstreams.iter().map(|u| u.to_string()).collect();
            info!(
                "inner DNS: forwarding {addr} (udp, tcp) to {} for inner containers",
                ups.join(", ")
            );
            args.to_vec()
        }
        Err(e) => {
            warn!(
                "inner DNS: cannot listen on {}: {e}; inner containers get dockerd's default DNS (which cannot reach the workspace's loopback resolvers)",
                fwd.listen
            );
            args.iter()
                .filter(|a| !plan.dockerd_args.contains(a))
                .cloned()
                .collect()
        }
    }
}
