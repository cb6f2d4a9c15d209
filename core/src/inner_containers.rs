//! The processes of inner containers, found from `/proc`, and holding them
//! to dockerd's `--shutdown-timeout`.
//!
//! dockerd stops each container with that container's own stop timeout (10 s
//! unless `docker run --stop-timeout`); `--shutdown-timeout` is only a floor.
//! So a container that ignores SIGTERM would keep dockerd stopping past its
//! deadline, and dockerd would be SIGKILLed mid-shutdown. When the time is
//! over, ws-init SIGKILLs the containers' processes itself: dockerd sees
//! them exit as it would after its own SIGKILL, and finishes by itself.
//! Nothing goes through the API: a stop asked for there counts as a manual
//! one, which `--restart unless-stopped` remembers at the next start.
//!
//! Every container runs below a containerd shim (`containerd-shim-runc-v2`,
//! `containerd-shim`, `containerd-shim-runsc-v1`, ...). The shims are
//! reparented to ws-init (PID 1, or a subreaper), in rootless mode too, so
//! the containers' processes are the descendants of the shims that descend
//! from ws-init.

use std::path::Path;

use crate::procs;

/// One process: what selection needs from `/proc/PID/{stat,exe}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: i32,
    pub ppid: i32,
    /// The kernel's name for it (`comm`: 15 bytes at most).
    pub comm: String,
    /// The file name of its executable, when it could be read (read only
    /// for processes whose `comm` names a shim).
    pub exe: Option<String>,
}

/// The processes to kill, and how many containers they make up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Shims with at least one live process below them.
    pub containers: usize,
    pub pids: Vec<i32>,
}

const SHIM_PREFIX: &str = "containerd-shim";

/// Whether a process is a containerd shim: its name says so, and so does its
/// executable when that could be read (a process can rename itself, not
/// change what it executes).
pub fn is_shim(p: &ProcEntry) -> bool {
    p.comm.starts_with(SHIM_PREFIX)
        && p.exe.as_deref().map_or(true, |exe| {
            exe.rsplit('/')
                .next()
                .is_some_and(|name| name.starts_with(SHIM_PREFIX))
        })
}

/// The OCI runtimes a shim runs as short-lived children (`runc kill`,
/// `runc delete`): they must finish, or the container's runtime state is
/// left behind for the next start.
const RUNTIMES: &[&str] = &["runc", "crun", "youki"];

/// Pure: the processes of inner containers in `table` (live processes only),
/// seen from `own_pid` (ws-init): every descendant of a serving shim that
/// descends from ws-init. A shim serves containers once it has left
/// containerd (it is reparented to ws-init, or a subreaper); one whose
/// parent is containerd is a short-lived `start`/`delete` run, cleaning up.
/// Never ws-init, the shims themselves, their ancestors (dockerd,
/// containerd), a runtime a shim is running with what it started, nor
/// anything outside ws-init's tree (processes entered with `docker exec`,
/// strangers when ws-init is a subreaper).
pub fn select(table: &[ProcEntry], own_pid: i32) -> Selection {
    let comm_of = |pid: i32| table.iter().find(|p| p.pid == pid).map(|p| p.comm.as_str());
    let pairs: Vec<(i32, i32)> = table.iter().map(|p| (p.pid, p.ppid)).collect();
    let ours = procs::descendants_of(&pairs, own_pid);
    let shims: Vec<i32> = table
        .iter()
        .filter(|p| ours.contains(&p.pid) && is_shim(p) && comm_of(p.ppid) != Some("containerd"))
        .map(|p| p.pid)
        .collect();
    // Without the runtimes the shims are running, their subtrees fall away.
    let without_runtimes: Vec<(i32, i32)> = table
        .iter()
        .filter(|p| !(shims.contains(&p.ppid) && RUNTIMES.contains(&p.comm.as_str())))
        .map(|p| (p.pid, p.ppid))
        .collect();
    let mut sel = Selection::default();
    for shim in &shims {
        // A shim below another one belongs to a container (Docker in an
        // inner container): it is killed with it, not counted apart.
        if shims
            .iter()
            .any(|s| procs::descendants_of(&pairs, *s).contains(shim))
        {
            continue;
        }
        let below = procs::descendants_of(&without_runtimes, *shim);
        if !below.is_empty() {
            sel.containers += 1;
            sel.pids.extend(below);
        }
    }
    sel.pids.sort_unstable();
    sel.pids.dedup();
    sel
}

/// The name between the first `(` and the last `)` of a `/proc/PID/stat` line.
pub fn parse_stat_comm(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// Live processes in `proc` (`/proc` in production), with the executable
/// of those named like a shim. Processes that end meanwhile are left out.
pub fn read_table(proc: &Path) -> Vec<ProcEntry> {
    let mut table = Vec::new();
    for (pid, stat) in procs::stat_entries(proc) {
        let (Some((state, ppid)), Some(comm)) = (procs::parse_stat(&stat), parse_stat_comm(&stat))
        else {
            continue;
        };
        if state == 'Z' || state == 'X' {
            continue;
        }
        let exe = comm.starts_with(SHIM_PREFIX).then(|| {
            std::fs::read_link(proc.join(pid.to_string()).join("exe"))
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        });
        table.push(ProcEntry {
            pid,
            ppid,
            comm: comm.to_string(),
            exe: exe.flatten(),
        });
    }
    table
}

/// SIGKILLs the processes of inner containers seen in `proc`, which must be
/// our own PID namespace's `/proc` (otherwise its numbers would name other
/// processes here, and nothing is done). Returns what was selected.
pub fn kill_all(proc: &Path) -> Selection {
    if !procs::proc_is_ours(proc) {
        return Selection::default();
    }
    let sel = select(&read_table(proc), std::process::id() as i32);
    for pid in &sel.pids {
        // SAFETY: plain kill; a pid just read from our own namespace's /proc.
        unsafe {
            libc::kill(*pid, libc::SIGKILL);
        }
    }
    sel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, comm: &str) -> ProcEntry {
        let exe = comm
            .starts_with(SHIM_PREFIX)
            .then(|| "/usr/bin/containerd-shim-runc-v2".to_string());
        ProcEntry {
            pid,
            ppid,
            comm: comm.to_string(),
            exe,
        }
    }

    /// A workspace as ws-init (PID 1) sees it at stop: dockerd, containerd,
    /// two shims reparented to ws-init with a container each (one in its own
    /// PID namespace with a child, one with `docker exec`'d processes), a
    /// shim whose container is gone, and processes that are no container's.
    fn workspace() -> Vec<ProcEntry> {
        vec![
            p(1, 0, "ws-init"),
            p(7, 1, "sleep"), // the main command
            p(20, 1, "dockerd"),
            p(21, 20, "containerd"),
            p(30, 1, "containerd-shim"),
            p(31, 30, "sh"),    // container A's init
            p(32, 31, "sleep"), // its child
            p(40, 1, "containerd-shim"),
            p(41, 40, "docker-init"), // container B, `--init`
            p(42, 41, "node"),
            p(43, 40, "bash"), // `docker exec` into B: a child of the shim
            p(50, 1, "containerd-shim"), // its container has exited
            p(60, 0, "bash"),  // `docker exec` into the workspace
            p(61, 60, "sleep"),
        ]
    }

    #[test]
    fn selects_every_process_below_the_shims_only() {
        let sel = select(&workspace(), 1);
        assert_eq!(sel.containers, 2);
        assert_eq!(sel.pids, [31, 32, 41, 42, 43]);
    }

    #[test]
    fn never_ws_init_dockerd_containerd_or_shims() {
        let sel = select(&workspace(), 1);
        for spared in [1, 7, 20, 21, 30, 40, 50, 60, 61] {
            assert!(!sel.pids.contains(&spared), "{spared} selected: {sel:?}");
        }
        assert_eq!(select(&[p(1, 0, "ws-init")], 1), Selection::default());
    }

    /// As a subreaper (not PID 1) ws-init sees its whole `/proc`: shims
    /// outside its tree are someone else's.
    #[test]
    fn only_shims_in_ws_init_s_tree_count() {
        let mut table: Vec<ProcEntry> = workspace()
            .into_iter()
            .map(|mut e| {
                if e.pid == 1 {
                    e.pid = 900;
                    e.ppid = 1;
                } else if e.ppid == 1 {
                    e.ppid = 900;
                }
                e
            })
            .collect();
        table.push(p(1, 0, "systemd"));
        table.push(p(70, 1, "containerd-shim")); // the host's
        table.push(p(71, 70, "nginx"));
        let sel = select(&table, 900);
        assert_eq!(sel.containers, 2);
        assert_eq!(sel.pids, [31, 32, 41, 42, 43]);
        // Shims entered from outside the namespace are not ours either.
        let mut exec_d = workspace();
        exec_d.push(p(80, 60, "containerd-shim"));
        exec_d.push(p(81, 80, "sh"));
        assert_eq!(select(&exec_d, 1).pids, [31, 32, 41, 42, 43]);
    }

    /// Rootless: shims run as the user below rootlesskit's namespaces, and
    /// their executable may be unreadable to ws-init; the name decides then.
    /// Docker inside an inner container: its shims go with that container.
    #[test]
    fn rootless_and_nested_shims() {
        let mut table = vec![
            p(1, 0, "ws-init"),
            p(10, 1, "rootlesskit"),
            p(11, 10, "exe"),
            p(12, 11, "dockerd"),
            p(13, 12, "containerd"),
            p(20, 1, "containerd-shim"),
            p(21, 20, "dockerd"), // a dind container
            p(22, 1, "containerd-shim"),
            p(23, 22, "sleep"),
        ];
        table[5].exe = None;
        table.push(p(24, 21, "containerd-shim")); // the dind's own shim
        table.push(p(25, 24, "sleep"));
        let sel = select(&table, 1);
        assert_eq!(sel.containers, 2);
        assert_eq!(sel.pids, [21, 23, 24, 25]);
    }

    /// Cleaning up after containers that have exited: containerd runs a
    /// shim's `delete`, and a serving shim runs `runc delete`. Both must
    /// finish, with their children.
    #[test]
    fn cleanup_runs_of_shims_and_runtimes_are_spared() {
        let mut table = workspace();
        table.extend([
            p(90, 21, "containerd-shim"), // `containerd-shim-runc-v2 delete`
            p(91, 90, "runc"),            // its `runc delete --force`
            p(92, 40, "runc"),            // container B's shim running `runc kill`
            p(93, 92, "runc"),
        ]);
        let sel = select(&table, 1);
        assert_eq!(sel.containers, 2);
        assert_eq!(sel.pids, [31, 32, 41, 42, 43]);
        // A shim whose container is gone, running `runc delete`: nothing to kill.
        let table = [
            p(1, 0, "ws-init"),
            p(50, 1, "containerd-shim"),
            p(51, 50, "runc"),
        ];
        assert_eq!(select(&table, 1), Selection::default());
    }

    #[test]
    fn a_renamed_process_is_no_shim() {
        let mut fake = p(30, 1, "containerd-shim");
        fake.exe = Some("/usr/bin/python3".into());
        assert!(!is_shim(&fake));
        assert!(is_shim(&p(30, 1, "containerd-shim")));
        let mut deleted = p(30, 1, "containerd-shim");
        deleted.exe = Some("/usr/bin/containerd-shim-runc-v2 (deleted)".into());
        assert!(is_shim(&deleted));
        assert!(!is_shim(&p(30, 1, "containerd")));
        let table = [p(1, 0, "ws-init"), fake, p(31, 30, "sh")];
        assert_eq!(select(&table, 1), Selection::default());
    }

    #[test]
    fn comm_is_read_whole_from_stat() {
        assert_eq!(
            parse_stat_comm("5 (containerd-shim) S 1 5"),
            Some("containerd-shim")
        );
        assert_eq!(parse_stat_comm("7 (a) b) S 1 7"), Some("a) b"));
        assert_eq!(parse_stat_comm("garbage"), None);
    }

    /// The real `/proc`: a shell run from a copy named like a shim, with a
    /// child: that child is selected and killed, the "shim" is not.
    #[test]
    fn kills_what_runs_below_a_real_shim() {
        let _children = crate::test_support::children_lock();
        let dir = tempfile::tempdir().unwrap();
        let shim_exe = dir.path().join("containerd-shim-runc-test");
        std::fs::copy("/bin/sh", &shim_exe).unwrap();
        let mut shim = std::process::Command::new(&shim_exe)
            .args(["-c", "sleep 30 & wait $!"])
            .spawn()
            .unwrap();
        let shim_pid = shim.id() as i32;
        let mut below = Vec::new();
        for _ in 0..100 {
            below = procs::descendants(Path::new("/proc"), shim_pid);
            if !below.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(below.len(), 1, "the shim's sleep did not start");
        let sel = kill_all(Path::new("/proc"));
        assert_eq!(sel.containers, 1, "{sel:?}");
        assert_eq!(sel.pids, below);
        // Its child killed, `wait $!` returns 128 + SIGKILL and the shell ends so.
        let status = shim.wait().unwrap();
        assert_eq!(status.code(), Some(128 + 9), "{status:?}");
    }
}
