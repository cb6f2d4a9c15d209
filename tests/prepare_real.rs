//! Real runs of the preparation steps: mounts in a private mount namespace of
//! a dedicated thread (so the host's mount table is never touched), cgroup v2
//! evacuation in throw-away child cgroups of the host's cgroup2 hierarchy.
//! Needs root; each test prints why it skips otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use ws_init::prepare::{self, RealSyscalls};
use ws_init::probe::{Mount, MountInfo};

mod common;
use common::in_private_mount_ns;

/// The mount table of the calling thread (which may have its own namespace).
const THREAD_MOUNTINFO: &str = "/proc/thread-self/mountinfo";

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP: needs root (mounts, cgroups)");
    false
}

fn thread_mounts() -> Vec<Mount> {
    MountInfo::parse(&std::fs::read_to_string(THREAD_MOUNTINFO).unwrap())
        .unwrap()
        .mounts
}

#[test]
fn securityfs_is_mounted_once() {
    if !is_root() {
        return;
    }
    let dir = Path::new("/sys/kernel/security");
    if !dir.is_dir() {
        eprintln!("SKIP: kernel has no {}", dir.display());
        return;
    }
    in_private_mount_ns(move || {
        let mountinfo = Path::new(THREAD_MOUNTINFO);
        let was_mounted = thread_mounts().iter().any(|m| m.mount_point == dir);
        let first = prepare::mount_securityfs(&RealSyscalls, dir, mountinfo).unwrap();
        if was_mounted {
            assert_eq!(first, prepare::SecurityfsOutcome::AlreadyMounted);
        } else {
            assert_eq!(first, prepare::SecurityfsOutcome::Mounted);
        }
        let m = thread_mounts();
        let entry = m.iter().find(|m| m.mount_point == dir).unwrap();
        assert_eq!(entry.fs_type, "securityfs");
        assert_eq!(
            prepare::mount_securityfs(&RealSyscalls, dir, mountinfo).unwrap(),
            prepare::SecurityfsOutcome::AlreadyMounted
        );
    });
}

#[test]
fn read_only_bind_mount_becomes_rw_keeping_flags() {
    if !is_root() {
        return;
    }
    in_private_mount_ns(|| {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().to_owned();
        let pids = Path::new("/sys/fs/cgroup/pids");
        let locked = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        // Like Docker's read-only cgroup v1 mounts: a bind of the hierarchy,
        // then remounted ro with nosuid,nodev,noexec.
        let use_cgroup = pids.join("cgroup.procs").exists();
        if use_cgroup {
            mount(
                Some(pids),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap();
        } else {
            eprintln!("note: no cgroup v1 pids hierarchy; using a tmpfs");
            mount(Some("tmpfs"), &target, Some("tmpfs"), locked, None::<&str>).unwrap();
        }
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | locked,
            None::<&str>,
        )
        .unwrap();
        assert!(statvfs(&target)
            .unwrap()
            .flags()
            .contains(FsFlags::ST_RDONLY));
        let probe_dir = target.join(format!("wsinit-rw-probe-{}", std::process::id()));
        assert!(
            std::fs::create_dir(&probe_dir).is_err(),
            "should be read-only"
        );

        let report = prepare::remount_cgroup_v1_rw(&RealSyscalls, std::slice::from_ref(&target));
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert_eq!(report.remounted, vec![target.clone()]);

        let flags = statvfs(&target).unwrap().flags();
        assert!(!flags.contains(FsFlags::ST_RDONLY));
        for f in [FsFlags::ST_NOSUID, FsFlags::ST_NODEV, FsFlags::ST_NOEXEC] {
            assert!(flags.contains(f), "lost {f:?}: {flags:?}");
        }
        let m = thread_mounts();
        let entry = m.iter().rev().find(|m| m.mount_point == target).unwrap();
        assert!(!entry.read_only(), "{entry:?}");
        // Really writable: a child cgroup (or a directory on the tmpfs).
        std::fs::create_dir(&probe_dir).unwrap();
        std::fs::remove_dir(&probe_dir).unwrap();

        let again = prepare::remount_cgroup_v1_rw(&RealSyscalls, std::slice::from_ref(&target));
        assert_eq!(again.already_rw, vec![target.clone()]);
        nix::mount::umount(&target).unwrap();
    });
}

#[test]
fn remount_of_missing_path_reports_failure() {
    let report =
        prepare::remount_cgroup_v1_rw(&RealSyscalls, &[PathBuf::from("/nonexistent/wsinit")]);
    assert_eq!(report.failed.len(), 1);
    let msg = report.failed[0].to_string();
    assert!(
        msg.contains("/nonexistent/wsinit") && msg.contains("--privileged"),
        "{msg}"
    );
}

#[test]
fn root_becomes_recursively_shared() {
    if !is_root() {
        return;
    }
    in_private_mount_ns(|| {
        let root_entry = |m: &[Mount]| {
            m.iter()
                .rev()
                .find(|e| e.mount_point == Path::new("/"))
                .cloned()
                .unwrap()
        };
        assert!(!root_entry(&thread_mounts()).is_shared());
        prepare::make_root_rshared(&RealSyscalls).unwrap();
        let m = thread_mounts();
        assert!(root_entry(&m).is_shared(), "{m:?}");
        // Recursive: submounts such as /proc are shared too.
        let proc_entry = m
            .iter()
            .find(|e| e.mount_point == Path::new("/proc"))
            .unwrap();
        assert!(proc_entry.is_shared(), "{proc_entry:?}");
    });
}

/// The host's cgroup2 mount point (`/sys/fs/cgroup` on v2 hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones).
fn cgroup2_mount() -> Option<PathBuf> {
    let m = MountInfo::parse(&std::fs::read_to_string("/proc/self/mountinfo").ok()?).ok()?;
    m.mounts
        .into_iter()
        .find(|e| e.fs_type == "cgroup2")
        .map(|e| e.mount_point)
}

/// A child cgroup removed (with its `init` child) on drop, plus the sleeping
/// process put into it.
struct TestCgroup {
    dir: PathBuf,
    sleeper: Child,
}

impl TestCgroup {
    fn new(parent: &Path, tag: &str) -> Self {
        let dir = parent.join(format!("wsinit-test-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let sleeper = Command::new("sleep").arg("60").spawn().unwrap();
        std::fs::write(dir.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
        TestCgroup { dir, sleeper }
    }

    fn procs(path: &Path) -> Vec<i32> {
        std::fs::read_to_string(path.join("cgroup.procs"))
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
        let _ = std::fs::remove_dir(self.dir.join("init"));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The cgroup tests share the hierarchy's root: while one hands a controller
/// down from the root, the other's evacuation would enable it in its own
/// cgroup and the root could not take it back (EBUSY, seen in CI). One at a time.
static CGROUP_ROOT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The cgroup2 mount to test under, held for this test alone; `None` (with
/// the reason printed) when not root or no cgroup2 is mounted.
fn cgroup_test_root() -> Option<(std::sync::MutexGuard<'static, ()>, PathBuf)> {
    if !is_root() {
        return None;
    }
    let guard = CGROUP_ROOT.lock().unwrap_or_else(|e| e.into_inner());
    match cgroup2_mount() {
        Some(parent) => Some((guard, parent)),
        None => {
            eprintln!("SKIP: no cgroup2 mounted");
            None
        }
    }
}

#[test]
fn evacuates_processes_into_init() {
    let Some((_root, parent)) = cgroup_test_root() else {
        return;
    };
    let cg = TestCgroup::new(&parent, "move");
    let pid = cg.sleeper.id() as i32;
    assert_eq!(TestCgroup::procs(&cg.dir), vec![pid]);

    let report =
        prepare::cgroup_v2_evacuate(&RealSyscalls, &cg.dir, "init", Duration::from_secs(2))
            .unwrap();
    assert_eq!(report.pids_moved, vec![pid]);
    assert_eq!(report.init_cgroup, cg.dir.join("init"));
    assert!(TestCgroup::procs(&cg.dir).is_empty());
    assert_eq!(TestCgroup::procs(&cg.dir.join("init")), vec![pid]);
    // Idempotent: a second run finds nothing to move and succeeds.
    let again = prepare::cgroup_v2_evacuate(&RealSyscalls, &cg.dir, "init", Duration::from_secs(2))
        .unwrap();
    assert!(again.pids_moved.is_empty());
    assert_eq!(again.attempts, 1);
}

#[test]
fn enables_controllers_that_were_busy() {
    let Some((_root, parent)) = cgroup_test_root() else {
        return;
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let available = read(&parent.join("cgroup.controllers"));
    let Some(controller) = available.split_whitespace().next().map(str::to_owned) else {
        eprintln!("SKIP: the cgroup2 hierarchy has no controllers (all bound to v1)");
        return;
    };
    // Hand the controller down to our child cgroup, remembering to undo it.
    let parent_subtree = parent.join("cgroup.subtree_control");
    let enabled_here = !read(&parent_subtree)
        .split_whitespace()
        .any(|c| c == controller);
    if enabled_here {
        std::fs::write(&parent_subtree, format!("+{controller}")).unwrap();
    }
    let result = std::panic::catch_unwind(|| {
        let cg = TestCgroup::new(&parent, "ctl");
        let child_controllers = read(&cg.dir.join("cgroup.controllers"));
        let want: Vec<String> = child_controllers
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert!(want.contains(&controller));
        // The problem being solved: with a process inside, enabling fails.
        let err = std::fs::write(
            cg.dir.join("cgroup.subtree_control"),
            format!("+{controller}"),
        )
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBUSY));

        let report =
            prepare::cgroup_v2_evacuate(&RealSyscalls, &cg.dir, "init", Duration::from_secs(2))
                .unwrap();
        assert_eq!(report.controllers_enabled, want);
        let subtree = read(&cg.dir.join("cgroup.subtree_control"));
        for c in &want {
            assert!(
                subtree.split_whitespace().any(|s| s == c),
                "{c} not in {subtree}"
            );
        }
        // Disable again so the cgroups can be removed in any order.
        let minus: Vec<String> = want.iter().map(|c| format!("-{c}")).collect();
        std::fs::write(cg.dir.join("cgroup.subtree_control"), minus.join(" ")).unwrap();
    });
    if enabled_here {
        std::fs::write(&parent_subtree, format!("-{controller}")).unwrap();
    }
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn legacy_links_to_the_installed_iptables() {
    let sbin: [&Path; 2] = [Path::new("/usr/sbin"), Path::new("/sbin")];
    if !sbin.iter().any(|d| d.join("iptables-legacy").exists()) {
        eprintln!("SKIP: iptables-legacy not installed (apt-get install iptables)");
        return;
    }
    // The targets as startup probes them: root-only binaries on the fixed search path.
    let root = Path::new("/");
    let search =
        ws_init::probe::binaries::trusted_dirs(root, ws_init::probe::binaries::SEARCH_PATH);
    let links = ws_init::probe::iptables::probe_iptables_files(root, &search).legacy_links;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("iptables-legacy");
    prepare::iptables_legacy_links(&dir, &links).unwrap();
    let v = prepare::iptables_version(&dir.join("iptables")).unwrap();
    assert!(v.starts_with("iptables v") && v.contains("legacy"), "{v}");
    let v6 = prepare::iptables_version(&dir.join("ip6tables")).unwrap();
    assert!(
        v6.starts_with("ip6tables v") && v6.contains("legacy"),
        "{v6}"
    );
}
