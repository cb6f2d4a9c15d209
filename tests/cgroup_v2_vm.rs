//! End-to-end test on a cgroup v2 host with real `--privileged`: boots a TCG VM
//! (tests/vm/run.sh) and runs the workspace image inside it. Slow (minutes), so it
//! only runs when `WS_VM_TESTS=1`; the image is `WSVM_IMAGE` or ws-init/workspace:dev.

use std::path::Path;
use std::process::Command;

#[test]
fn cgroup_v2_host_with_real_privileged() {
    if std::env::var("WS_VM_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "skipped: the cgroup v2 VM test boots a QEMU VM for several minutes; \
             set WS_VM_TESTS=1 to run it (or run tests/vm/run.sh)"
        );
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: tests/vm/run.sh needs root (loop mounts, a private dockerd)");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/run.sh");
    let status = Command::new(&script)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        status.success(),
        "{} failed ({status}): see the WSVM-RESULT lines above",
        script.display()
    );
}
