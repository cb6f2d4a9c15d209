//! The core's non-blocking [`signals::SignalFd`] registered with the tokio
//! runtime, for the runtime-driven PID 1 until the core's own loop drives it.

use std::io;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use ws_init_core::signals::{self, Received};

/// A signalfd for every catchable signal, read asynchronously. The signals
/// must be blocked ([`signals::block_all`]), or they are delivered the
/// normal way and never show up here.
pub struct SignalFd {
    fd: AsyncFd<signals::SignalFd>,
}

impl SignalFd {
    pub fn open() -> io::Result<SignalFd> {
        let sigfd = signals::SignalFd::open()?;
        // SAFETY: the AsyncFd owns the core's SignalFd, whose descriptor
        // stays open and the same until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(sigfd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(SignalFd { fd })
    }

    /// The next signal, waiting for one if none is pending.
    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.get_inner().read()? {
                Some(r) => return Ok(r),
                None => guard.clear_ready(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The core names signals as nix (and so the kernel's headers) does.
    #[test]
    fn core_signal_names_match_nix() {
        for signo in 1..=signals::SIGNAL_MAX {
            let nix = nix::sys::signal::Signal::try_from(signo).map(|s| s.as_str());
            assert_eq!(signals::known_name(signo), nix.ok(), "signal {signo}");
        }
    }
}
