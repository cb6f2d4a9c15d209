//! Harness for running the built ws-init binary as a real process: as PID 1
//! of a fresh PID namespace (`unshare --pid --fork --mount-proc`) or as a
//! plain child (subreaper mode). Every wait is bounded; a run that outlives
//! its bound is killed (with its whole namespace) and the test fails with
//! ws-init's output.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The binary under test: the one cargo built for this test run, or another
/// build of it (the static musl release) named by `WS_INIT_TEST_BIN`.
pub fn ws_init() -> String {
    std::env::var("WS_INIT_TEST_BIN")
        .ok()
        .filter(|p| !p.is_empty())
        .map(|p| {
            std::fs::canonicalize(&p)
                .unwrap_or_else(|e| panic!("WS_INIT_TEST_BIN={p}: {e}"))
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_ws-init").to_string())
}

/// The ELF machine of a binary (EM_X86_64 0x3e, EM_AARCH64 0xb7), if it is one.
fn elf_machine(path: &str) -> Option<u16> {
    use std::io::Read;
    let mut head = [0u8; 20];
    File::open(path).ok()?.read_exact(&mut head).ok()?;
    (head[..4] == *b"\x7fELF").then(|| u16::from_le_bytes([head[18], head[19]]))
}

/// True when the binary under test is for another architecture than the
/// tests (a `WS_INIT_TEST_BIN` built for aarch64, tests/multiarch/run.sh): the
/// kernel runs it through qemu-user's binfmt handler.
pub fn emulated() -> bool {
    let host = match std::env::consts::ARCH {
        "x86_64" => 0x3e,
        "aarch64" => 0xb7,
        _ => return false,
    };
    elf_machine(&ws_init()).is_some_and(|m| m != host)
}

/// A check that cannot hold under qemu-user emulation: when emulated and the
/// gap is `observed` (a newer qemu may not have it), names it with the reason
/// (tests/multiarch/run.sh lists these lines) and returns true; the caller
/// then checks what does hold there instead. Natively always false.
pub fn emulation_gap(check: &str, observed: bool, reason: &str) -> bool {
    if !observed || !emulated() {
        return false;
    }
    eprintln!("[emulation gap] {check}: {reason}");
    true
}

/// Why a child subreaper cannot exist under emulation.
pub const QEMU_NO_SUBREAPER: &str = "qemu-user (7.2, Debian bookworm) answers \
    prctl(PR_SET_CHILD_SUBREAPER) with EINVAL without asking the kernel (a TODO \
    case in linux-user's do_prctl), so orphans go to the host's init";

/// Bound of a whole ws-init run unless a test says otherwise.
pub const RUN_BOUND: Duration = Duration::from_secs(20);

/// True when the test may run; prints why not otherwise.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipping {test}: needs root (PID and mount namespaces, user switch)");
    false
}

/// How ws-init is started.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// PID 1 of a new PID namespace with its own /proc.
    Pid1,
    /// A plain child of the test: not PID 1, so a child subreaper.
    Subreaper,
}

/// A configured ws-init run, built like a `Command`.
pub struct Spec {
    mode: Mode,
    /// A shell snippet run (as root) inside the new namespaces before
    /// `exec ws-init`; needs a private mount namespace.
    setup: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    stdin: Option<Stdio>,
    blocked: Vec<i32>,
    /// Another copy of ws-init to run (with its own ws-init-bringup beside it).
    program: Option<String>,
}

/// A running ws-init with its output going to files in `dir`.
pub struct Running {
    pub child: Child,
    pub started: Instant,
    out: PathBuf,
    err: PathBuf,
    mode: Mode,
    reaped: bool,
    /// The ws-init binary it runs.
    bin: String,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Spec {
    pub fn new(mode: Mode, args: &[&str]) -> Spec {
        Spec {
            mode,
            setup: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
            blocked: Vec::new(),
            program: None,
        }
    }

    /// Runs this copy of ws-init instead of the one under test.
    pub fn program(mut self, path: &Path) -> Spec {
        self.program = Some(path.to_string_lossy().into_owned());
        self
    }

    /// `ws-init sh -c SCRIPT`.
    pub fn sh(mode: Mode, script: &str) -> Spec {
        Spec::new(mode, &["sh", "-c", script])
    }

    pub fn env(mut self, k: &str, v: &str) -> Spec {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn cwd(mut self, dir: &Path) -> Spec {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    pub fn stdin(mut self, s: Stdio) -> Spec {
        self.stdin = Some(s);
        self
    }

    /// ws-init starts with these signals blocked, inherited from its parent.
    pub fn blocked(mut self, sigs: &[i32]) -> Spec {
        self.blocked = sigs.to_vec();
        self
    }

    /// Runs `script` as root inside a private mount namespace (and the PID
    /// namespace) before ws-init is exec'd as PID 1.
    pub fn setup(mut self, script: &str) -> Spec {
        assert_eq!(self.mode, Mode::Pid1, "setup needs the namespaces");
        self.setup = Some(script.to_string());
        self
    }

    pub fn spawn(self, dir: &Path) -> Running {
        let out = dir.join("ws-init.stdout");
        let err = dir.join("ws-init.stderr");
        let bin = self.program.clone().unwrap_or_else(ws_init);
        let mut cmd = match (self.mode, &self.setup) {
            (Mode::Subreaper, _) => Command::new(&bin),
            (Mode::Pid1, None) => {
                let mut c = Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc", &bin]);
                c
            }
            (Mode::Pid1, Some(setup)) => {
                // sh is PID 1 for the setup, then becomes ws-init by exec.
                let mut c = Command::new("unshare");
                c.args([
                    "--mount",
                    "--propagation",
                    "private",
                    "--pid",
                    "--fork",
                    "--mount-proc",
                    "sh",
                    "-c",
                    &format!("set -e\n{setup}\nexec \"$0\" \"$@\""),
                    &bin,
                ]);
                c
            }
        };
        cmd.args(&self.args);
        // The caller's environment must not configure ws-init behind our back.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("WS_") || k.starts_with("DOCKER_") {
                cmd.env_remove(&*k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(d) = &self.cwd {
            cmd.current_dir(d);
        }
        cmd.stdin(self.stdin.unwrap_or_else(Stdio::null))
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap());
        if !self.blocked.is_empty() {
            let blocked = self.blocked.clone();
            // SAFETY: only async-signal-safe calls between fork and exec, on
            // data allocated before the fork.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    for &sig in &blocked {
                        libc::sigaddset(&mut set, sig);
                    }
                    libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("start ws-init");
        Running {
            child,
            started: Instant::now(),
            out,
            err,
            mode: self.mode,
            reaped: false,
            bin,
        }
    }

    /// Spawns and waits, bounded by `RUN_BOUND`.
    pub fn run(self, dir: &Path) -> Outcome {
        self.spawn(dir).wait(RUN_BOUND)
    }
}

impl Running {
    /// The host PID of ws-init itself: the child of `unshare` in PID-1 mode.
    /// Waits (bounded) for it to exist, and in setup mode for the exec.
    pub fn ws_init_pid(&self) -> i32 {
        let me = self.child.id() as i32;
        if self.mode == Mode::Subreaper {
            return me;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for (pid, ppid) in process_table() {
                if ppid == me && exe_is(pid, &self.bin) {
                    return pid;
                }
            }
            assert!(
                Instant::now() < deadline,
                "ws-init did not appear under unshare (pid {me}); stderr:\n{}",
                read(&self.err)
            );
            sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` to ws-init itself.
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.ws_init_pid()), sig).expect("signal ws-init");
    }

    pub fn stderr_now(&self) -> String {
        read(&self.err)
    }

    /// Waits at most `bound` for the run to end; otherwise kills it (and its
    /// namespace) and fails the test with its output.
    pub fn wait(mut self, bound: Duration) -> Outcome {
        let deadline = self.started + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.reaped = true;
                return Outcome {
                    code: status.code(),
                    status,
                    stdout: read(&self.out),
                    stderr: read(&self.err),
                    elapsed: self.started.elapsed(),
                };
            }
            if Instant::now() >= deadline {
                self.kill_all();
                panic!(
                    "ws-init still running after {bound:?}: killed.\nstdout:\n{}\nstderr:\n{}",
                    read(&self.out),
                    read(&self.err)
                );
            }
            sleep(Duration::from_millis(10));
        }
    }

    fn kill_all(&mut self) {
        let me = self.child.id() as i32;
        if self.mode == Mode::Pid1 {
            // Killing PID 1 of the namespace kills every process in it.
            for (pid, ppid) in process_table() {
                if ppid == me {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        } else {
            for pid in descendants(me) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that panicked before waiting must not leave processes behind.
        if !self.reaped {
            self.kill_all();
        }
    }
}

/// Under emulation /proc/PID/exe is qemu's interpreter; the binary it runs
/// is its first argument.
fn exe_is(pid: i32, bin: &str) -> bool {
    let want = std::fs::canonicalize(bin).ok();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    if exe == want {
        return true;
    }
    let is_qemu = exe
        .as_ref()
        .and_then(|e| e.file_name())
        .is_some_and(|n| n.to_string_lossy().starts_with("qemu-"));
    if !is_qemu || !emulated() {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let runs = cmdline
        .split(|&b| b == 0)
        .nth(1)
        .map(|a| std::fs::canonicalize(String::from_utf8_lossy(a).as_ref()).ok());
    runs.flatten() == want
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// (pid, ppid) of every process visible in /proc.
pub fn process_table() -> Vec<(i32, i32)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(st) = stat(pid) {
            v.push((pid, st.ppid));
        }
    }
    v
}

pub fn descendants(root: i32) -> Vec<i32> {
    let table = process_table();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(table.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// The fields of /proc/PID/stat the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub tpgid: i32,
}

/// Parses a stat line; fields are counted after the last `)` because the
/// command name may contain anything.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        tpgid: f.get(5)?.parse().ok()?,
    })
}

/// None if the process does not exist (any more).
pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Waits (bounded) until `cond` holds; false if it never did.
pub fn wait_until(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) for a file the main command writes to say it is ready.
pub fn wait_for_file(p: &Path, run: &Running) {
    assert!(
        wait_until(Duration::from_secs(10), || p.exists()),
        "{} never appeared; ws-init stderr:\n{}",
        p.display(),
        run.stderr_now()
    );
}

/// A private scratch directory, world-accessible so a switched user can write.
pub fn scratch() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new()
        .prefix("ws-init-pid1-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// `'…'`-quotes a path for a shell script.
pub fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Runs `body` on a new thread that first enters a private mount namespace
/// (mount namespaces are per task, so only that thread sees the changes and
/// they vanish with it).
pub fn in_private_mount_ns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .expect("make / rprivate");
        body()
    })
    .join()
    .expect("namespace thread panicked")
}
