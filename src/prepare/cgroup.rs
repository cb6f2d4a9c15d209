//! cgroup v2 evacuation (hack/dind step 4).
//!
//! Under cgroup v2 a cgroup that holds processes cannot hand controllers to
//! its children ("no internal processes"), and the container's root cgroup is
//! such a cgroup from dockerd's point of view. So: move every process of ROOT
//! into ROOT/init, then enable every available controller in
//! ROOT/cgroup.subtree_control. A `docker exec` can land a new process in ROOT
//! between the two writes, which makes the second fail with EBUSY: the pair is
//! retried, but (unlike upstream, which retries on any error forever) only on
//! EBUSY and only until a deadline.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::{PrepareError, Syscalls};

/// Pause between two attempts of the move+enable pair.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// What `cgroup_v2_evacuate` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EvacuateReport {
    /// The leaf cgroup the processes now live in.
    pub init_cgroup: PathBuf,
    /// PIDs moved (over all attempts).
    pub pids_moved: Vec<i32>,
    /// PIDs that exited before they could be moved (ESRCH).
    pub pids_vanished: Vec<i32>,
    /// PIDs the kernel refused to move (EINVAL: kernel threads).
    pub pids_refused: Vec<i32>,
    /// Controllers written to ROOT/cgroup.subtree_control.
    pub controllers_enabled: Vec<String>,
    /// Number of move+enable rounds (1 when nothing raced).
    pub attempts: u32,
}

/// Run `attempt` until it succeeds, fails with something other than EBUSY, or
/// `deadline` has passed since the first try. Returns the last result and the
/// number of attempts made.
pub fn retry_while_busy<T>(
    deadline: Duration,
    pause: Duration,
    mut attempt: impl FnMut() -> io::Result<T>,
) -> (io::Result<T>, u32) {
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = attempt();
        match &result {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < deadline => {
                debug!(attempts, "cgroup v2: controllers busy, retrying");
                std::thread::sleep(pause);
            }
            _ => return (result, attempts),
        }
    }
}

fn cg_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PrepareError {
    let path = path.to_owned();
    move |source| PrepareError::Cgroup {
        action,
        path,
        source,
    }
}

/// PIDs listed in a `cgroup.procs` file. Processes outside our PID namespace
/// (a host cgroup namespace shows them) read as 0, and writing 0 would move
/// the writer itself: they are skipped.
fn parse_pids(text: &str) -> Vec<i32> {
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .collect()
}

/// Move every PID of `root/cgroup.procs` into `init/cgroup.procs`, one write
/// per PID (the kernel takes one PID per write).
fn move_all(
    sys: &dyn Syscalls,
    root: &Path,
    init: &Path,
    report: &mut EvacuateReport,
) -> Result<(), PrepareError> {
    let procs = root.join("cgroup.procs");
    let text = sys.read_to_string(&procs).map_err(cg_err("read", &procs))?;
    let target = init.join("cgroup.procs");
    for pid in parse_pids(&text) {
        match sys.write_file(&target, &pid.to_string()) {
            Ok(()) => report.pids_moved.push(pid),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => report.pids_vanished.push(pid),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                debug!(
                    pid,
                    "cgroup v2: kernel refused to move pid (kernel thread?)"
                );
                if !report.pids_refused.contains(&pid) {
                    report.pids_refused.push(pid);
                }
            }
            Err(e) => return Err(cg_err("move processes into", &target)(e)),
        }
    }
    Ok(())
}

/// Evacuate the cgroup v2 `root` into `root/init_name` and enable all its
/// controllers for children. `deadline` bounds the EBUSY retries (2 s is ample:
/// the race window is a few microseconds).
pub fn cgroup_v2_evacuate(
    sys: &dyn Syscalls,
    root: &Path,
    init_name: &str,
    deadline: Duration,
) -> Result<EvacuateReport, PrepareError> {
    let init = root.join(init_name);
    match sys.create_dir(&init) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(cg_err("create", &init)(e)),
    }
    let controllers_file = root.join("cgroup.controllers");
    let controllers: Vec<String> = sys
        .read_to_string(&controllers_file)
        .map_err(cg_err("read", &controllers_file))?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let line = controllers
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let subtree = root.join("cgroup.subtree_control");

    let mut report = EvacuateReport {
        init_cgroup: init.clone(),
        ..Default::default()
    };
    let start = Instant::now();
    // A non-EBUSY failure inside the closure is kept here and returned as is.
    let mut hard_error: Option<PrepareError> = None;
    let (result, attempts) = retry_while_busy(deadline, RETRY_PAUSE, || {
        if let Err(e) = move_all(sys, root, &init, &mut report) {
            hard_error = Some(e);
            return Ok(());
        }
        if line.is_empty() {
            return Ok(());
        }
        sys.write_file(&subtree, &line)
    });
    report.attempts = attempts;
    if let Some(e) = hard_error {
        return Err(e);
    }
    match result {
        Ok(()) => {
            report.controllers_enabled = controllers;
            if !report.pids_vanished.is_empty() {
                debug!(pids = ?report.pids_vanished, "cgroup v2: pids exited before the move");
            }
            Ok(report)
        }
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            warn!(attempts, "cgroup v2: root cgroup stayed busy");
            Err(PrepareError::CgroupBusy {
                path: subtree,
                controllers: line,
                attempts,
                elapsed_ms: start.elapsed().as_millis(),
            })
        }
        Err(e) => Err(cg_err("enable controllers in", &subtree)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::syscall::recording::{Call, Recording};
    use crate::prepare::RealSyscalls;

    /// A root cgroup with `procs` (one content per read) and two controllers.
    fn cgroup(procs: &[&str]) -> Recording {
        Recording::default()
            .file("/cg/cgroup.procs", procs)
            .file("/cg/cgroup.controllers", &["cpu memory\n"])
    }

    #[test]
    fn moves_each_pid_then_enables_all_controllers() {
        let sys = cgroup(&["1\n0\n42\n"]);
        let r = cgroup_v2_evacuate(&sys, Path::new("/cg"), "init", Duration::ZERO).unwrap();
        assert_eq!(
            sys.calls(),
            [
                Call::CreateDir("/cg/init".into()),
                Call::Write("/cg/init/cgroup.procs".into(), "1".into()),
                Call::Write("/cg/init/cgroup.procs".into(), "42".into()),
                Call::Write("/cg/cgroup.subtree_control".into(), "+cpu +memory".into()),
            ],
            "foreign-namespace pid 0 is never written"
        );
        assert_eq!((r.pids_moved, r.attempts), (vec![1, 42], 1));
        assert_eq!(r.controllers_enabled, ["cpu", "memory"]);
        assert_eq!(r.init_cgroup, Path::new("/cg/init"));
    }

    #[test]
    fn existing_init_cgroup_vanished_and_kernel_pids_are_not_errors() {
        let sys = cgroup(&["1 7 2\n"])
            .fail("/cg/init", None, libc::EEXIST, 1)
            .fail("/cg/init/cgroup.procs", Some("7"), libc::ESRCH, 1)
            .fail("/cg/init/cgroup.procs", Some("2"), libc::EINVAL, 1);
        let r = cgroup_v2_evacuate(&sys, Path::new("/cg"), "init", Duration::ZERO).unwrap();
        assert_eq!(r.pids_moved, [1]);
        assert_eq!(r.pids_vanished, [7]);
        assert_eq!(r.pids_refused, [2]);
        assert_eq!(r.controllers_enabled, ["cpu", "memory"]);
    }

    #[test]
    fn a_failed_move_is_a_hard_error_without_enabling() {
        let sys = cgroup(&["1\n"]).fail("/cg/init/cgroup.procs", None, libc::EACCES, 1);
        let err = cgroup_v2_evacuate(&sys, Path::new("/cg"), "init", Duration::from_secs(2))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot move processes into /cg/init/cgroup.procs"),
            "{err}"
        );
        assert!(sys.writes_to("/cg/cgroup.subtree_control").is_empty());
    }

    #[test]
    fn ebusy_retries_the_pair_and_moves_late_arrivals() {
        // A `docker exec` lands pid 9 in the root between move and enable.
        let sys =
            cgroup(&["1\n", "9\n", ""]).fail("/cg/cgroup.subtree_control", None, libc::EBUSY, 2);
        let r = cgroup_v2_evacuate(&sys, Path::new("/cg"), "init", Duration::from_secs(2)).unwrap();
        assert_eq!(r.attempts, 3);
        assert_eq!(r.pids_moved, [1, 9]);
        assert_eq!(sys.writes_to("/cg/init/cgroup.procs"), ["1", "9"]);
        assert_eq!(sys.writes_to("/cg/cgroup.subtree_control").len(), 3);
    }

    #[test]
    fn ebusy_that_never_clears_ends_at_the_deadline_with_a_clear_error() {
        let sys = cgroup(&["1\n"]).fail("/cg/cgroup.subtree_control", None, libc::EBUSY, u32::MAX);
        let start = Instant::now();
        let err = cgroup_v2_evacuate(&sys, Path::new("/cg"), "init", Duration::from_millis(60))
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(1));
        let PrepareError::CgroupBusy { attempts, .. } = &err else {
            panic!("{err}");
        };
        assert!(*attempts >= 2, "retried: {attempts}");
        assert_eq!(
            sys.writes_to("/cg/cgroup.subtree_control").len(),
            *attempts as usize
        );
        assert!(err.to_string().contains("still failed with EBUSY"), "{err}");
    }

    #[test]
    fn no_controllers_means_no_subtree_write() {
        let sys = Recording::default()
            .file("/cg/cgroup.procs", &["1\n"])
            .file("/cg/cgroup.controllers", &["\n"]);
        let r = cgroup_v2_evacuate(&sys, Path::new("/cg"), "init", Duration::ZERO).unwrap();
        assert!(r.controllers_enabled.is_empty());
        assert!(sys.writes_to("/cg/cgroup.subtree_control").is_empty());
    }

    #[test]
    fn pids_parse_ignores_blank_and_garbage() {
        assert_eq!(parse_pids("1\n23\n\nx\n456\n"), vec![1, 23, 456]);
        assert_eq!(
            parse_pids("0\n0\n7\n"),
            vec![7],
            "foreign-namespace pids read as 0"
        );
    }

    fn busy() -> io::Error {
        io::Error::from_raw_os_error(libc::EBUSY)
    }

    #[test]
    fn retries_only_on_ebusy_until_success() {
        let mut n = 0;
        let (r, attempts) = retry_while_busy(Duration::from_secs(2), Duration::ZERO, || {
            n += 1;
            if n < 3 {
                Err(busy())
            } else {
                Ok(n)
            }
        });
        assert_eq!(r.unwrap(), 3);
        assert_eq!(attempts, 3);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let (r, attempts) = retry_while_busy(Duration::from_secs(2), Duration::ZERO, || {
            Err::<(), _>(io::Error::from_raw_os_error(libc::EINVAL))
        });
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        assert_eq!(attempts, 1);
    }

    #[test]
    fn ebusy_is_bounded_by_the_deadline() {
        let start = Instant::now();
        let (r, attempts) =
            retry_while_busy(Duration::from_millis(50), Duration::from_millis(5), || {
                Err::<(), _>(busy())
            });
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EBUSY));
        assert!(attempts >= 2, "attempts {attempts}");
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn missing_root_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = cgroup_v2_evacuate(
            &RealSyscalls,
            &tmp.path().join("nope"),
            "init",
            Duration::ZERO,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cannot create"), "{err}");
        assert!(err.contains("--privileged"), "{err}");
    }
}
