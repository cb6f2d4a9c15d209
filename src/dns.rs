//! Inner DNS (design §4): the forwarder itself is the resident core's
//! ([`ws_init_core::dns`]); `plan::dns` decides whether it runs. Until the core's poll
//! loop drives it, the tokio program serves it from a thread of its own with a small
//! poll loop of the same shape.

use std::io;
use std::time::{Duration, Instant};

use tracing::warn;
use ws_init_core::reactor::Interest;

pub use ws_init_core::dns::{dockerd_args, message, Config, Forwarder};

use crate::plan::dns::DnsPlan;

/// Serves `fwd` from a thread of its own for the program's whole life.
fn serve_in_thread(mut fwd: Forwarder) -> io::Result<()> {
    std::thread::Builder::new()
        .name("inner-dns".into())
        .spawn(move || {
            let mut interest = Interest::default();
            loop {
                interest.clear();
                fwd.register(Instant::now(), &mut interest);
                if let Err(e) = interest.poll(fwd.deadline()) {
                    warn!("inner DNS forwarder: poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                fwd.service(&interest, Instant::now());
            }
        })
        .map(drop)
}

/// Starts the forwarder the plan asks for (if any) and returns dockerd's arguments: `args`
/// as planned, or without the plan's DNS flags when the forwarder cannot listen, so
/// dockerd's own defaults apply instead of a server that does not answer.
pub fn start_planned(dns: Option<&DnsPlan>, args: &[String]) -> Vec<String> {
    let Some((plan, fwd)) = dns.and_then(|d| d.forwarder.as_ref().map(|f| (d, f))) else {
        return args.to_vec();
    };
    let cfg = Config::new(fwd.listen, fwd.upstreams.clone());
    let (fwd, args) = ws_init_core::dns::start_planned(cfg, args, &plan.dockerd_args);
    let Some(fwd) = fwd else {
        return args;
    };
    let addr = fwd.local_addr();
    match serve_in_thread(fwd) {
        Ok(()) => args,
        Err(e) => {
            warn!("inner DNS: cannot start a thread to serve {addr}: {e}; inner containers get dockerd's default DNS");
            dockerd_args(&args, false, &plan.dockerd_args)
        }
    }
}
