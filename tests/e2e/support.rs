//! Support for the end-to-end tests: the image (built once per test binary), the outer
//! `docker` CLI with timeouts, and guards that remove what a test created.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Default tag when `WS_E2E_IMAGE` is not set.
const DEFAULT_IMAGE: &str = "ws-init/workspace:e2e";

/// Flags that give a workspace what `--privileged` gives, for engines that refuse
/// `--privileged` (see BRIEF: "unable to apply caps").
const NEAR_PRIVILEGED: &[&str] = &[
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--security-opt",
    "systempaths=unconfined",
];

/// Everything the tests share: the image tag and the flags that make a workspace privileged.
pub struct E2e {
    pub image: String,
    pub privileged: Vec<String>,
}

static E2E: OnceLock<Result<E2e, String>> = OnceLock::new();

/// The shared test environment, or `None` when the run asked to skip (WS_E2E_SKIP=1).
/// Fails the test when Docker is unusable or the image cannot be built: a machine without
/// Docker must not look green.
pub fn e2e() -> Option<&'static E2e> {
    if std::env::var("WS_E2E_SKIP").as_deref() == Ok("1") {
        eprintln!("skipping end-to-end test: WS_E2E_SKIP=1 is set");
        return None;
    }
    match E2E.get_or_init(init) {
        Ok(e) => Some(e),
        Err(msg) => panic!("end-to-end setup failed: {msg}"),
    }
}

fn init() -> Result<E2e, String> {
    let info = run(
        Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]),
        secs(60),
    );
    if !info.ok() {
        return Err(format!(
            "`docker info` failed, so the end-to-end tests cannot run (set WS_E2E_SKIP=1 to skip them \
             on a machine without Docker):\n{}",
            info.describe()
        ));
    }
    // WS_E2E_IMAGE names an image tests/run.sh built for this run: build it only if missing.
    // Without it, build every time (incremental: seconds) so the image has the current code.
    let preset = std::env::var("WS_E2E_IMAGE").ok().filter(|s| !s.is_empty());
    let image = preset.clone().unwrap_or_else(|| DEFAULT_IMAGE.to_string());
    let present = run(
        Command::new("docker").args(["image", "inspect", &image]),
        secs(30),
    )
    .ok();
    if preset.is_none() || !present {
        let script = repo_root().join("image/build.sh");
        eprintln!("building {image} with {}", script.display());
        // build.sh prints its phases; let them through to the test output.
        let status = Command::new("bash")
            .arg(&script)
            .arg(&image)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !status.success() {
            return Err(format!("{} {image} failed: {status}", script.display()));
        }
    }
    let privileged = detect_privileged_flags(&image);
    eprintln!("workspace privilege flags: {}", privileged.join(" "));
    Ok(E2e { image, privileged })
}

/// `--privileged` when the engine accepts it, else the near-privileged set.
fn detect_privileged_flags(image: &str) -> Vec<String> {
    let out = run(
        Command::new("docker").args([
            "run",
            "--rm",
            "--privileged",
            "--entrypoint",
            "/bin/true",
            image,
        ]),
        secs(60),
    );
    if out.ok() {
        vec!["--privileged".to_string()]
    } else {
        NEAR_PRIVILEGED.iter().map(|s| s.to_string()).collect()
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A name no other test or run uses: `wse2e-<what>-<pid>`.
pub fn unique(what: &str) -> String {
    format!("wse2e-{what}-{}", std::process::id())
}

/// The result of one command run with a time bound.
pub struct Out {
    pub cmdline: String,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Out {
    pub fn ok(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn describe(&self) -> String {
        let how = if self.timed_out {
            "timed out (killed)".to_string()
        } else {
            match self.status {
                Some(s) => s.to_string(),
                None => "did not start".to_string(),
            }
        };
        format!(
            "$ {}\n-> {how}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            tail(&self.stdout, 40),
            tail(&self.stderr, 40)
        )
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` with no input, killing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Out {
    run_with_input(cmd, None, timeout)
}

/// Runs `cmd`, feeding it `input` when given, killing it after `timeout`. Output is read on
/// threads so a chatty command cannot block on a full pipe.
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Out {
    let cmdline = format!("{cmd:?}").replace('"', "");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Out {
                cmdline,
                status: None,
                stdout: String::new(),
                stderr: e.to_string(),
                timed_out: false,
            }
        }
    };
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out_t = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_t = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(_) => break None,
        }
    };
    Out {
        cmdline,
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
        timed_out,
    }
}

/// `docker ARGS...` on the outer engine, bounded.
pub fn docker(args: &[&str], timeout: Duration) -> Out {
    run(Command::new("docker").args(args), timeout)
}

/// `docker ARGS...` that must succeed; returns trimmed stdout.
pub fn docker_ok(args: &[&str], timeout: Duration) -> String {
    let out = docker(args, timeout);
    assert!(out.ok(), "docker command failed:\n{}", out.describe());
    out.stdout.trim().to_string()
}

/// Polls `probe` every half second until it returns `Some`, or gives up after `timeout`.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// A container on the outer engine, removed (with its anonymous volumes) when dropped.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `docker run -d --name NAME ARGS... IMAGE CMD...`; panics when the engine refuses.
    pub fn start(name: &str, args: &[&str], image: &str, cmd: &[&str]) -> Container {
        let c = Container {
            name: name.to_string(),
        };
        // A leftover from an interrupted run of the same pid would make the name clash.
        let _ = docker(&["rm", "-f", "-v", name], secs(60));
        let mut full = vec!["run", "-d", "--name", name];
        full.extend_from_slice(args);
        full.push(image);
        full.extend_from_slice(cmd);
        let out = docker(&full, secs(120));
        assert!(
            out.ok(),
            "cannot start {name}:\n{}\n{}",
            out.describe(),
            c.diagnostics()
        );
        c
    }

    /// A privileged workspace with the inner Docker enabled.
    pub fn workspace(e: &E2e, name: &str, extra: &[&str]) -> Container {
        let mut args: Vec<&str> = e.privileged.iter().map(String::as_str).collect();
        args.extend_from_slice(&["-e", "WS_DOCKER_ENABLE_CLIENT=1"]);
        args.extend_from_slice(extra);
        Container::start(name, &args, &e.image, &[])
    }

    /// `docker exec [-u USER] NAME ARGS...`, bounded.
    pub fn exec(&self, user: Option<&str>, args: &[&str], timeout: Duration) -> Out {
        self.exec_input(user, args, None, timeout)
    }

    pub fn exec_input(
        &self,
        user: Option<&str>,
        args: &[&str],
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Out {
        let mut cmd = Command::new("docker");
        cmd.arg("exec");
        if input.is_some() {
            cmd.arg("-i");
        }
        if let Some(u) = user {
            cmd.args(["-u", u]);
        }
        cmd.arg(&self.name).args(args);
        run_with_input(&mut cmd, input, timeout)
    }

    /// `exec` that must succeed; returns trimmed stdout. Failure shows the container's logs.
    pub fn exec_ok(&self, user: Option<&str>, args: &[&str], timeout: Duration) -> String {
        let out = self.exec(user, args, timeout);
        if !out.ok() {
            self.fail(&format!(
                "command in {} failed:\n{}",
                self.name,
                out.describe()
            ));
        }
        out.stdout.trim().to_string()
    }

    /// `sh -c SCRIPT` as `workspace`, must succeed.
    pub fn sh_ok(&self, script: &str, timeout: Duration) -> String {
        self.exec_ok(Some("workspace"), &["sh", "-c", script], timeout)
    }

    /// As `workspace`, `docker run --rm IMAGE echo WORD` must print WORD (`when` names the
    /// moment in the failure message, e.g. "after restart").
    pub fn check_inner_echo(&self, image: &str, word: &str, when: &str) {
        let out = self.exec_ok(
            Some("workspace"),
            &["docker", "run", "--rm", image, "echo", word],
            secs(120),
        );
        self.check(
            out == word,
            &format!("{when}the inner container printed {out:?}, want {word:?}"),
        );
    }

    /// Waits until the Docker API seen from the workspace answers (`ws-init wait-docker`).
    pub fn wait_docker(&self, timeout_secs: u64) {
        let t = timeout_secs.to_string();
        let out = self.exec(
            None,
            &["ws-init", "wait-docker", "--timeout", &t],
            secs(timeout_secs + 30),
        );
        if !out.ok() {
            self.fail(&format!(
                "Docker did not answer within {timeout_secs} s:\n{}",
                out.describe()
            ));
        }
    }

    pub fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.name], secs(30))
            .stdout
            .trim()
            .to_string()
    }

    pub fn running(&self) -> bool {
        self.inspect("{{.State.Running}}") == "true"
    }

    /// Waits until the container has exited; returns its exit code.
    pub fn wait_exit(&self, timeout: Duration) -> i32 {
        let out = docker(&["wait", &self.name], timeout);
        if !out.ok() {
            self.fail(&format!(
                "{} did not exit within {timeout:?}:\n{}",
                self.name,
                out.describe()
            ));
        }
        out.stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| self.fail("`docker wait` printed no exit code"))
    }

    pub fn logs(&self) -> String {
        let out = docker(&["logs", &self.name], secs(30));
        format!("{}{}", out.stdout, out.stderr)
    }

    /// The container's log and the inner dockerd's log tail, for failure messages.
    pub fn diagnostics(&self) -> String {
        let logs = docker(&["logs", "--tail", "60", &self.name], secs(30));
        let mut s = format!(
            "=== docker logs --tail 60 {} ===\n{}{}",
            self.name, logs.stdout, logs.stderr
        );
        if self.running() {
            let d = self.exec(
                None,
                &["tail", "-n", "60", "/var/log/dockerd.log"],
                secs(30),
            );
            s.push_str(&format!(
                "=== {}:/var/log/dockerd.log (tail) ===\n{}{}",
                self.name, d.stdout, d.stderr
            ));
        } else {
            s.push_str(&format!(
                "=== {} is not running: {} ===\n",
                self.name,
                self.inspect("{{json .State}}")
            ));
        }
        s
    }

    /// Panics with `msg` and the container's diagnostics.
    pub fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.diagnostics())
    }

    /// Asserts `cond`, failing with `msg` and the diagnostics.
    pub fn check(&self, cond: bool, msg: &str) {
        if !cond {
            self.fail(msg);
        }
    }

    /// Imports a tiny image named `tag` inside the workspace (as `workspace`), made from the
    /// host's static busybox: /bin/busybox plus its applet links, so `sh`, `httpd`, `wget`,
    /// `sleep` work as commands. No registry is needed.
    pub fn import_busybox(&self, tag: &str) {
        let busybox = host_busybox();
        let out = docker(
            &[
                "cp",
                &busybox.to_string_lossy(),
                &format!("{}:/tmp/busybox", self.name),
            ],
            secs(60),
        );
        if !out.ok() {
            self.fail(&format!(
                "cannot copy busybox into {}:\n{}",
                self.name,
                out.describe()
            ));
        }
        self.exec_ok(None, &["chmod", "0755", "/tmp/busybox"], secs(30));
        let script = format!(
            "set -e; r=$(mktemp -d); mkdir \"$r/bin\"; cp /tmp/busybox \"$r/bin/busybox\"; \
             for a in $(/tmp/busybox --list); do [ \"$a\" = busybox ] || ln -s busybox \"$r/bin/$a\"; done; \
             mkdir \"$r/tmp\" \"$r/etc\"; \
             tar -C \"$r\" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD [\"sh\"]' - {tag} >/dev/null; \
             rm -rf \"$r\"; docker image inspect --format '{{{{.Id}}}}' {tag}"
        );
        self.sh_ok(&script, secs(120));
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name], secs(120));
    }
}

/// The host's statically linked busybox (Debian's busybox-static).
pub fn host_busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("no /bin/busybox on the host: install busybox-static (the e2e tests build inner images from it)")
}

/// `docker stop -t 60` of the workspace `ws` reaches an inner container with SIGTERM: the inner
/// container (from `image`, which has `sh`) traps it into `/shared/term`, with the host's `dir`
/// mounted on `/shared` in the workspace; the stop must end well before the timeout.
pub fn check_stop_delivers_sigterm_inside(ws: &Container, dir: &Path, image: &str) {
    ws.sh_ok(
        &format!(
            "docker run -d --name trapper -v /shared:/shared {image} sh -c \
             'trap \"echo got-term > /shared/term; exit 0\" TERM; echo ready > /shared/ready; \
              while true; do sleep 1; done'"
        ),
        secs(120),
    );
    let ready = wait_for(secs(30), || dir.join("ready").exists().then_some(()));
    ws.check(
        ready.is_some(),
        "the inner container never wrote /shared/ready",
    );
    let started = Instant::now();
    docker_ok(&["stop", "-t", "60", &ws.name], secs(120));
    let took = started.elapsed();
    let term = std::fs::read_to_string(dir.join("term")).unwrap_or_default();
    assert_eq!(
        term.trim(),
        "got-term",
        "the inner container did not get SIGTERM\n{}",
        ws.diagnostics()
    );
    assert!(
        took < secs(30),
        "docker stop took {took:?} (timeout 60 s)\n{}",
        ws.diagnostics()
    );
}

/// A named volume on the outer engine, removed when dropped.
pub struct Volume {
    pub name: String,
}

impl Volume {
    pub fn create(name: &str) -> Volume {
        docker_ok(&["volume", "create", name], secs(30));
        Volume {
            name: name.to_string(),
        }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = docker(&["volume", "rm", "-f", &self.name], secs(60));
    }
}

/// A user-defined bridge network on the outer engine, removed when dropped (declare it before
/// the containers on it so they are removed first).
pub struct Network {
    pub name: String,
}

impl Network {
    pub fn create(name: &str) -> Network {
        let _ = docker(&["network", "rm", name], secs(30));
        docker_ok(&["network", "create", name], secs(30));
        Network {
            name: name.to_string(),
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.name], secs(60));
    }
}

/// A host directory for bind mounts, world-writable so every level's users can write, removed
/// when dropped.
pub fn host_dir(what: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("wse2e-{what}-"))
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    dir
}
