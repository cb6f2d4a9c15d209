//! The one `poll(2)` loop's plumbing: every resident part (the signalfd, the
//! dockerd supervisor's pipes and readiness probe, the DNS forwarder) says
//! which descriptors it waits on and when its next timer is due; the loop
//! polls them all with the nearest deadline as timeout and hands the results
//! back. No threads, no runtime.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Descriptors to wait on, filled by each part's `register`.
#[derive(Default)]
pub struct Interest {
    pub fds: Vec<libc::pollfd>,
}

impl Interest {
    pub fn clear(&mut self) {
        self.fds.clear();
    }

    /// Waits for `fd` to become readable (`POLLIN`).
    pub fn read(&mut self, fd: RawFd) {
        self.add(fd, libc::POLLIN);
    }

    /// Waits for `fd` to become writable (`POLLOUT`).
    pub fn write(&mut self, fd: RawFd) {
        self.add(fd, libc::POLLOUT);
    }

    pub fn add(&mut self, fd: RawFd, events: i16) {
        if let Some(p) = self.fds.iter_mut().find(|p| p.fd == fd) {
            p.events |= events;
        } else {
            self.fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
        }
    }

    /// Polls until a descriptor is ready or `deadline` (none: forever).
    /// EINTR counts as "nothing ready".
    pub fn poll(&mut self, deadline: Option<Instant>) -> std::io::Result<()> {
        let timeout = match deadline {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                // Rounded up: waking early would spin until the deadline.
                let ms = left.as_millis() + u128::from(left.subsec_nanos() % 1_000_000 != 0);
                ms.min(i32::MAX as u128) as i32
            }
        };
        // SAFETY: a valid, exclusively borrowed array of `len` pollfds.
        let n = unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                timeout,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
            for p in &mut self.fds {
                p.revents = 0;
            }
        }
        Ok(())
    }

    /// What `poll` reported for `fd` (0 if it was not registered).
    pub fn revents(&self, fd: RawFd) -> i16 {
        self.fds
            .iter()
            .find(|p| p.fd == fd)
            .map(|p| p.revents)
            .unwrap_or(0)
    }

    /// Readable, or hung up / in error (a read then tells which).
    pub fn readable(&self, fd: RawFd) -> bool {
        self.revents(fd) & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
    }

    pub fn writable(&self, fd: RawFd) -> bool {
        self.revents(fd) & (libc::POLLOUT | libc::POLLHUP | libc::POLLERR) != 0
    }
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
pub fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}
