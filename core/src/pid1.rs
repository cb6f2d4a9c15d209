//! What ws-init needs to know about its own place: PID 1 or a subreaper,
//! the namespace it sees, the terminal it was given.

use std::io;
use std::path::Path;

use crate::procs;

/// Whether fd 0 is a terminal we can hand to the main command.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(0) == 1 }
}

/// Become a child subreaper when not PID 1, so orphans still come to us.
/// Returns whether it did (false as PID 1, which is the reaper anyway).
pub fn become_subreaper_if_needed() -> io::Result<bool> {
    if std::process::id() == 1 {
        return Ok(false);
    }
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Our pid when we are PID 1 and `/proc` is our namespace's, so that every
/// process in it is ours to see and signal; `None` otherwise.
pub fn whole_namespace() -> Option<i32> {
    (std::process::id() == 1 && procs::proc_is_ours(Path::new("/proc"))).then_some(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_process_becomes_a_subreaper_and_sees_no_whole_namespace() {
        assert_ne!(std::process::id(), 1);
        assert!(become_subreaper_if_needed().unwrap());
        let mut on: libc::c_int = 0;
        // SAFETY: prctl writes one int through the pointer it is given.
        let r = unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut on as *mut libc::c_int) };
        assert_eq!((r, on), (0, 1));
        assert_eq!(whole_namespace(), None);
    }
}
