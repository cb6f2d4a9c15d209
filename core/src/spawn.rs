//! Starting a child clean: its own process group (in the terminal's
//! foreground when asked), default signal dispositions and an empty mask,
//! and the user it runs as. Set up with `pre_exec`, between fork and exec.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::signals;

/// Who the main command runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
    pub shell: String,
}

/// Prepares `cmd` to start as a clean child: its own process group (in the
/// foreground of the terminal, if stdin is one), default signal dispositions
/// and an empty mask, and, for a user other than root, that user's ids and
/// groups with every capability gone (setuid away from root clears the
/// permitted, effective and ambient sets).
pub fn configure_child(cmd: &mut Command, run_as: Option<&RunAs>, foreground_tty: bool) {
    if let Some(user) = run_as {
        cmd.env("HOME", &user.home)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name);
        if std::env::var_os("SHELL").is_none() && !user.shell.is_empty() {
            cmd.env("SHELL", &user.shell);
        }
    }
    let ids = run_as.map(|u| (u.uid, u.gid, u.groups.clone()));
    // SAFETY: the closure runs between fork and exec and only calls
    // async-signal-safe functions on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if foreground_tty {
                // We are a background group until tcsetpgrp succeeds, so
                // SIGTTOU must not stop us while we take the terminal.
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(0, libc::getpid());
            }
            // Every signal up to SIGRTMAX included, through the raw system
            // call: glibc's and musl's wrappers refuse the signals they keep
            // for themselves (32..=34), and those arrive ignored from a
            // parent that used glibc's posix_spawn.
            for sig in 1..=signals::SIGNAL_MAX {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    set_signal_disposition(sig, libc::SIG_DFL);
                }
            }
            // ws-init blocks every signal (32..=34 included, which libc's
            // sigprocmask would keep): the raw system call clears them all.
            signals::clear_mask();
            if let Some((uid, gid, groups)) = &ids {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setresgid(*gid, *gid, *gid) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setresuid(*uid, *uid, *uid) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The kernel's `struct sigaction` (x86_64, aarch64): the raw system call
/// takes this layout, not libc's. Other architectures differ (no `restorer`
/// on riscv64, `flags` first on mips, a 128-bit mask on 32-bit ones), so they
/// get a build error rather than a wrong layout.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!(
    "KernelSigaction in core/src/spawn.rs has the kernel's struct sigaction layout of x86_64 \
     and aarch64 only: add this architecture's layout (see arch/*/include/uapi/asm/signal.h)"
);
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Sets `sig`'s disposition (`SIG_DFL`, `SIG_IGN`) by `rt_sigaction` itself:
/// the libc wrappers refuse the signals glibc and musl keep for themselves
/// (32..=34). Async-signal-safe. Returns the system call's result (0 = done).
pub fn set_signal_disposition(sig: i32, handler: libc::sighandler_t) -> i32 {
    let act = KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: a valid struct for the duration of the call, no old action asked.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &act as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            std::mem::size_of::<u64>(),
        ) as i32
    }
}
