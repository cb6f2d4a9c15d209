//! Bring-up in its own short-lived process: `ws-init-bringup __bringup`
//! probes, plans and applies, then hands PID 1 the plan on a pipe and
//! exits. A panic or hang there cannot take PID 1 down: signals are still
//! read meanwhile, and a stop request kills it.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::event_loop::{Core, Reading};
use crate::exit::ChildExit;
use crate::fd;
use crate::handover::{self, Handover};
use crate::signals;
use crate::spawn::configure_child;

/// Why bring-up handed nothing over: the exit status ws-init ends with.
pub struct BringupFailed(pub i32);

/// Runs `ws-init-bringup __bringup` and reads its handover, collecting
/// signals meanwhile. A stop signal (or a bring-up that never hands over)
/// ends it; the caller then stops in order.
pub fn bring_up(core: &mut Core, program: &Path) -> Result<Handover, BringupFailed> {
    let pipe = fd::pipe().and_then(|(r, w)| fd::set_nonblocking(r.as_raw_fd()).map(|()| (r, w)));
    let (read_end, write_end) = match pipe {
        Ok(p) => p,
        Err(e) => {
            error!("cannot create the pipe bring-up hands its plan over on: {e}");
            return Err(BringupFailed(1));
        }
    };
    let mut cmd = Command::new(program);
    cmd.arg("__bringup")
        .env(handover::FD_ENV, "3")
        .stdin(Stdio::null());
    let wfd = write_end.as_raw_fd();
    // SAFETY: between fork and exec only dup2 or fcntl (async-signal-safe)
    // on a descriptor prepared before the fork.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            // dup2 onto itself keeps close-on-exec: clear it then.
            let r = if wfd == 3 {
                libc::fcntl(wfd, libc::F_SETFD, 0)
            } else {
                libc::dup2(wfd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    configure_child(&mut cmd, None, false);
    let pid = match core.children.spawn(&mut cmd) {
        Ok(pid) => pid,
        Err(e) => {
            error!(
                "cannot run {} ({e}); it is installed with ws-init (image/build.sh installs both); reinstall ws-init",
                program.display()
            );
            return Err(BringupFailed(1));
        }
    };
    drop(cmd);
    drop(write_end);
    core.reading = Some(Reading {
        pipe: read_end,
        text: Vec::new(),
        done: false,
    });
    let mut stop = None;
    core.wait_until(None, |c| {
        while let Some(sig) = c.next_signal() {
            if signals::starts_stop(sig.signo) {
                stop = Some(sig.signo);
            } else {
                debug!(
                    "{} received before the main command started: dropped",
                    signals::name(sig.signo)
                );
            }
        }
        stop.is_some() || c.reading.as_ref().is_some_and(|r| r.done)
    });
    let text = core.reading.take().expect("set above").text;
    if let Some(signo) = stop {
        info!(
            "{} received during bring-up: stopping",
            signals::name(signo)
        );
        core.children.signal(pid, libc::SIGKILL);
        return Err(BringupFailed(128 + signo));
    }
    if text.is_empty() {
        // Nothing handed over: its exit status says why (it logged it).
        let exit = core.wait_child(pid, None);
        return Err(BringupFailed(match exit {
            Some(ChildExit::Exited(0)) | None => {
                error!("bring-up ended without handing over a plan; this is a bug in ws-init");
                1
            }
            Some(ChildExit::Exited(code)) => code,
            Some(e @ ChildExit::Signaled { .. }) => {
                error!("bring-up {e} before handing over a plan; the workspace cannot start (run `ws-init doctor` to see what it found)");
                1
            }
        }));
    }
    match std::str::from_utf8(&text)
        .map_err(|_| handover::DecodeError("not UTF-8".into()))
        .and_then(Handover::decode)
    {
        Ok(h) => Ok(h),
        Err(e) => {
            error!("{e}");
            Err(BringupFailed(1))
        }
    }
}
