//! Benchmark load for PID 1 reaping: makes `--count` orphaned zombies at once and
//! measures how long the init of this PID namespace takes to reap them all.
//!
//! Every orphan is a grandchild: a child forks it and exits at once (this
//! program reaps the child itself), so the grandchild is re-parented to the
//! init. Grandchildren block on a pipe until all of them exist, then the pipe
//! is closed and they all exit together: `--count` zombies arrive in one
//! burst. We then wait until /proc no longer lists any of them.
//!
//!   orphans [--count N] [--proc DIR]
//!
//! Prints one line: `orphans=N spawn_ms=... reap_ms=...` (reap_ms is from the
//! burst until the last zombie is gone). Run it as the main command of the
//! init under test, in its own PID namespace
//! (`unshare --pid --fork --mount-proc INIT -- orphans`).

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::wait::waitpid;
use nix::unistd::{close, fork, pipe, read, ForkResult, Pid};

fn usage() -> ExitCode {
    eprintln!("usage: orphans [--count N] [--proc DIR]");
    ExitCode::from(2)
}

/// PIDs listed in `proc_dir` (numeric directory names).
fn pids(proc_dir: &Path) -> std::io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(proc_dir)? {
        if let Some(pid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(pid);
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let mut count: usize = 10_000;
    let mut proc_dir = PathBuf::from("/proc");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--count", Some(v)) => match v.parse() {
                Ok(n) => count = n,
                Err(_) => return usage(),
            },
            ("--proc", Some(v)) => proc_dir = PathBuf::from(v),
            _ => return usage(),
        }
    }

    let before = match pids(&proc_dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("orphans: cannot list {}: {e}", proc_dir.display());
            return ExitCode::FAILURE;
        }
    };
    let (rd, wr) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("orphans: pipe: {e}");
            return ExitCode::FAILURE;
        }
    };

    let spawn_start = Instant::now();
    for i in 0..count {
        // SAFETY: single-threaded program; the children only call async-signal-safe
        // functions (fork, close, read, _exit).
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // SAFETY: the child of a single-threaded parent is single-threaded;
                // the grandchild only calls close, read and _exit.
                if let Ok(ForkResult::Child) = unsafe { fork() } {
                    let _ = close(wr.as_raw_fd());
                    let mut buf = [0u8; 1];
                    // Blocks until the writer end is closed everywhere: the burst.
                    let _ = read(rd.as_raw_fd(), &mut buf);
                }
                // SAFETY: _exit ends the forked process at once, without running
                // the parent's atexit handlers or flushing its copied buffers.
                unsafe { libc::_exit(0) };
            }
            Ok(ForkResult::Parent { child }) => {
                if let Err(e) = waitpid(child, None) {
                    eprintln!("orphans: waitpid {child}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!(
                    "orphans: fork failed after {i} orphans: {e}; raise pid_max or lower --count"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let spawn_ms = spawn_start.elapsed().as_secs_f64() * 1000.0;

    let burst = Instant::now();
    drop(wr);
    drop(rd);
    let me = Pid::this().as_raw() as u32;
    let deadline = Duration::from_secs(120);
    loop {
        let now = match pids(&proc_dir) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("orphans: cannot list {}: {e}", proc_dir.display());
                return ExitCode::FAILURE;
            }
        };
        let left = now
            .iter()
            .filter(|p| **p != me && !before.contains(p))
            .count();
        if left == 0 {
            break;
        }
        if burst.elapsed() > deadline {
            eprintln!(
                "orphans: {left} processes still listed after {deadline:?}: the init does not reap"
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let reap_ms = burst.elapsed().as_secs_f64() * 1000.0;
    println!("orphans={count} spawn_ms={spawn_ms:.1} reap_ms={reap_ms:.1}");
    ExitCode::SUCCESS
}
