//! Real runs of rootless mode's preparation as root, in temporary trees (and
//! a private mount namespace of a dedicated thread for the tmpfs): the
//! runtime directory, /dev/net/tun, the subordinate id files, and links
//! planted by the user refused rather than followed.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use ws_init::rootless::prepare;

mod common;
use common::in_private_mount_ns;

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP: needs root (mknod, chown, mounts)");
    false
}

#[test]
fn runtime_dir_is_a_private_tmpfs_of_the_user() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_path_buf();
    in_private_mount_ns(move || {
        let dir = root.join("user/1000");
        // A file left from an earlier run (a stale pid file) is hidden by the fresh tmpfs.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("docker.pid"), "42").unwrap();
        let done = prepare::runtime_dir(&dir, 1000, 1000).unwrap();
        assert!(done.contains("tmpfs"), "{done}");
        let m = std::fs::metadata(&dir).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o700));
        assert!(!dir.join("docker.pid").exists(), "stale file visible");
        let mounts = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        assert!(
            mounts
                .lines()
                .any(|l| l.contains(&dir.display().to_string()) && l.contains(" - tmpfs ")),
            "{mounts}"
        );
        let parent = std::fs::metadata(root.join("user")).unwrap();
        assert_eq!((parent.uid(), parent.mode() & 0o7777), (0, 0o755));
        nix::mount::umount(&dir).unwrap();
    });
}

#[test]
fn runtime_dir_refuses_a_planted_link() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let victim = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("user")).unwrap();
    std::os::unix::fs::symlink(victim.path(), t.path().join("user/1000")).unwrap();
    let before = std::fs::metadata(victim.path()).unwrap();
    let e = prepare::runtime_dir(&t.path().join("user/1000"), 1000, 1000)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not followed"), "{e}");
    let after = std::fs::metadata(victim.path()).unwrap();
    assert_eq!((before.uid(), before.mode()), (after.uid(), after.mode()));
}

#[test]
fn tun_device_is_created_once() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dev = t.path();
    match prepare::create_tun(dev) {
        Ok(done) => assert!(done.contains("created"), "{done}"),
        // A filesystem mounted nodev (or no CAP_MKNOD): the message names the fix.
        Err(e) => {
            assert!(e.to_string().contains("--device /dev/net/tun"), "{e}");
            eprintln!("SKIP: cannot create device nodes here: {e}");
            return;
        }
    }
    let m = std::fs::metadata(dev.join("net/tun")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), nix::sys::stat::makedev(10, 200));
    assert_eq!(m.permissions().mode() & 0o777, 0o666);
    assert_eq!(prepare::create_tun(dev).unwrap(), "already there");
}

#[test]
fn subid_file_is_replaced_not_written_through() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("subuid");
    // A hard link to another file: the edit replaces the name, the other file keeps its text.
    let other = t.path().join("other");
    std::fs::write(&other, "other:100000:65536\n").unwrap();
    std::fs::hard_link(&other, &f).unwrap();
    prepare::add_subids(&f, "workspace:165536:65536").unwrap();
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "other:100000:65536\nworkspace:165536:65536\n"
    );
    assert_eq!(
        std::fs::read_to_string(&other).unwrap(),
        "other:100000:65536\n"
    );
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o644));
    // A link in place of the file is refused.
    let l = t.path().join("subgid");
    std::os::unix::fs::symlink(&other, &l).unwrap();
    assert!(prepare::add_subids(&l, "workspace:165536:65536").is_err());
    assert_eq!(
        std::fs::read_to_string(&other).unwrap(),
        "other:100000:65536\n"
    );
}
