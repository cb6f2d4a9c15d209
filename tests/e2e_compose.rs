//! End-to-end tests of the Compose examples (examples/*.yaml) with docker-compose v1 and the
//! outer Docker engine: each test brings a project up under a name unique to this run,
//! checks what a user would check, and removes the project with its volumes in a Drop guard.
//!
//! Environment:
//! - `WS_E2E_IMAGE`: the workspace image to use (default `ws-init/workspace:dev`); it must
//!   exist already (image/build.sh TAG builds it).
//! - `WS_E2E_SKIP=1`: skip (machines without Docker).
//!
//! Engines that refuse `--privileged` ("unable to apply caps") get the near-privileged
//! override file of each example instead.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DEFAULT_IMAGE: &str = "ws-init/workspace:dev";

/// `up -d` waits for the daemon's HEALTHCHECK (start period 60 s, then 3 tries 10 s apart).
const UP_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the workspace may take to answer `docker version` once its container runs.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const DOWN_TIMEOUT: Duration = Duration::from_secs(120);
const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// What a bounded command did.
struct Outcome {
    /// `None` when it was killed at the timeout or could not be started.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    what: String,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "did not finish (timeout or not started)".to_string(),
        };
        format!(
            "`{}`: {status}\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd` with stdin closed and kills it when it outlives `timeout`.
fn run(cmd: &mut Command, timeout: Duration) -> Outcome {
    let what = format!("{cmd:?}");
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                status: None,
                stdout: String::new(),
                stderr: format!("cannot start: {e}"),
                what,
            }
        }
    };
    // Read both pipes on threads so a chatty command cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let out_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(100)),
            Err(_) => break None,
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let mut stderr = err_reader.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {timeout:?})"));
    }
    Outcome {
        status,
        stdout,
        stderr,
        what,
    }
}

/// What every test needs: the image, and whether `privileged: true` works on this engine.
struct Env {
    image: String,
    privileged_works: bool,
}

static ENV: OnceLock<Result<Env, String>> = OnceLock::new();

/// `None` when the run asked to skip. Panics when Docker, docker-compose or the image are
/// missing: a machine that cannot run these tests must not look green.
fn env() -> Option<&'static Env> {
    if std::env::var("WS_E2E_SKIP").as_deref() == Ok("1") {
        eprintln!("skipping the Compose end-to-end test: WS_E2E_SKIP=1 is set");
        return None;
    }
    match ENV.get_or_init(probe_env) {
        Ok(e) => Some(e),
        Err(msg) => panic!("Compose end-to-end setup failed: {msg}"),
    }
}

fn probe_env() -> Result<Env, String> {
    let compose = run(Command::new("docker-compose").arg("version"), CMD_TIMEOUT);
    if !compose.ok() {
        return Err(format!(
            "docker-compose (v1) is needed: apt-get install docker-compose\n{}",
            compose.describe()
        ));
    }
    let image = std::env::var("WS_E2E_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_string());
    let inspect = run(
        Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", &image]),
        CMD_TIMEOUT,
    );
    if !inspect.ok() {
        return Err(format!(
            "image {image} not found: build it with `bash image/build.sh {image}` (or set \
             WS_E2E_IMAGE to an image that exists)\n{}",
            inspect.describe()
        ));
    }
    // Some engines refuse --privileged ("unable to apply caps"); the examples ship an
    // override with the equivalent flags for them.
    let probe = run(
        Command::new("docker").args([
            "run",
            "--rm",
            "--privileged",
            "--entrypoint",
            "/bin/true",
            &image,
        ]),
        Duration::from_secs(60),
    );
    let privileged_works = probe.ok();
    if !privileged_works {
        let why = if probe.stderr.contains("unable to apply caps") {
            "the engine cannot apply the full capability set"
        } else {
            "unexpected failure"
        };
        eprintln!(
            "--privileged does not work here ({why}): using the near-privileged overrides\n{}",
            probe.describe()
        );
    }
    Ok(Env {
        image,
        privileged_works,
    })
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A project name no other run or test uses (lower case letters and digits, as
/// docker-compose v1 wants).
fn unique_project(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "wse2e{tag}{}x{nanos}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A docker-compose project that is taken down with its volumes when dropped, also when
/// the test fails half-way (its logs are printed first then).
struct Project {
    name: String,
    files: Vec<PathBuf>,
    image: String,
}

impl Project {
    /// `base` is the example; `override_file` its near-privileged override, used when
    /// `privileged: true` does not work on this engine.
    fn new(env: &Env, tag: &str, base: &str, override_file: &str) -> Project {
        let dir = examples_dir();
        let mut files = vec![dir.join(base)];
        if !env.privileged_works {
            files.push(dir.join(override_file));
        }
        for f in &files {
            assert!(f.is_file(), "missing example file {}", f.display());
        }
        Project {
            name: unique_project(tag),
            files,
            image: env.image.clone(),
        }
    }

    fn compose(&self) -> Command {
        let mut c = Command::new("docker-compose");
        c.args(["--ansi", "never"]).arg("-p").arg(&self.name);
        for f in &self.files {
            c.arg("-f").arg(f);
        }
        // The examples take their image from WS_IMAGE.
        c.env("WS_IMAGE", &self.image);
        c
    }

    fn up(&self) {
        let up = run(self.compose().args(["up", "-d"]), UP_TIMEOUT);
        assert!(
            up.ok(),
            "`docker-compose up -d` failed for project {}:\n{}",
            self.name,
            up.describe()
        );
    }

    /// `docker-compose exec -T -u USER SERVICE sh -c SCRIPT`, bounded.
    fn exec(&self, user: &str, service: &str, script: &str) -> Outcome {
        run(
            self.compose()
                .args(["exec", "-T", "-u", user, service, "sh", "-c", script]),
            CMD_TIMEOUT,
        )
    }

    /// Retries `script` until it succeeds or READY_TIMEOUT passes; returns the last try.
    fn exec_until_ok(&self, user: &str, service: &str, script: &str) -> Outcome {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = self.exec(user, service, script);
            if out.ok() || Instant::now() >= deadline {
                return out;
            }
            thread::sleep(Duration::from_secs(2));
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if thread::panicking() {
            let logs = run(
                self.compose().args(["logs", "--no-color", "--tail", "80"]),
                CMD_TIMEOUT,
            );
            eprintln!("logs of project {}:\n{}", self.name, logs.describe());
        }
        let down = run(
            self.compose()
                .args(["down", "-v", "--remove-orphans", "--timeout", "30"]),
            DOWN_TIMEOUT,
        );
        if !down.ok() {
            eprintln!(
                "cleanup of project {} failed; remove it with `docker-compose -p {} down -v`:\n{}",
                self.name,
                self.name,
                down.describe()
            );
        }
    }
}

/// examples/compose.tls.yaml: the client workspace, which runs no Docker of its own, uses
/// the daemon workspace's dockerd over tcp 2376 with mutual TLS, as the workspace user.
#[test]
fn compose_tls_client_uses_daemon_over_mutual_tls() {
    let Some(env) = env() else { return };
    let project = Project::new(
        env,
        "tls",
        "compose.tls.yaml",
        "compose.tls.near-privileged.yaml",
    );
    project.up();

    let version = project.exec_until_ok(
        "workspace",
        "client",
        "docker version --format '{{.Server.Version}}'",
    );
    assert!(
        version.ok(),
        "the client never reached the daemon over TLS within {READY_TIMEOUT:?}:\n{}",
        version.describe()
    );
    assert!(
        !version.stdout.trim().is_empty(),
        "`docker version` printed no server version:\n{}",
        version.describe()
    );

    // It really is the remote daemon: the client has no Docker socket of its own, and its
    // environment points at tcp://daemon:2376 with verification on.
    let local = project.exec(
        "workspace",
        "client",
        "test ! -e /var/run/docker.sock && test \"$DOCKER_HOST\" = tcp://daemon:2376 \
         && test \"$DOCKER_TLS_VERIFY\" = 1",
    );
    assert!(
        local.ok(),
        "the client is not set up as a pure TLS client:\n{}",
        local.describe()
    );

    // The daemon insists on TLS: plain HTTP to 2376 is refused ...
    let plain = project.exec(
        "workspace",
        "client",
        "env -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH docker version --format '{{.Server.Version}}'",
    );
    assert!(
        !plain.ok(),
        "the daemon answered a client without TLS:\n{}",
        plain.describe()
    );
    // ... and so is TLS without a client certificate (mutual TLS, --tlsverify).
    let anonymous = project.exec(
        "workspace",
        "client",
        "cd /tmp && HOME=/tmp env -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH \
         docker --tlsverify --tlscacert /certs/client/ca.pem version --format '{{.Server.Version}}'",
    );
    assert!(
        !anonymous.ok(),
        "the daemon answered a TLS client without a client certificate:\n{}",
        anonymous.describe()
    );

    // The client sees only the client material, read-only: never the CA's key.
    let material = project.exec(
        "workspace",
        "client",
        "test -r /certs/client/key.pem && test -r /certs/client/cert.pem \
         && test -r /certs/client/ca.pem && test ! -e /certs/ca \
         && awk '$2 == \"/certs/client\" { print $4 }' /proc/self/mounts | grep -Eq '^ro(,|$)'",
    );
    assert!(
        material.ok(),
        "the client's certificate volume is not as documented:\n{}",
        material.describe()
    );
}

/// examples/compose.yaml: one workspace whose user runs `docker` against the inner dockerd
/// through the unix socket.
#[test]
fn compose_workspace_user_runs_docker() {
    let Some(env) = env() else { return };
    let project = Project::new(env, "ws", "compose.yaml", "compose.near-privileged.yaml");
    project.up();

    let version = project.exec_until_ok(
        "workspace",
        "workspace",
        "docker version --format '{{.Server.Version}}'",
    );
    assert!(
        version.ok() && !version.stdout.trim().is_empty(),
        "the workspace user could not use the inner Docker within {READY_TIMEOUT:?}:\n{}",
        version.describe()
    );
    // The inner Docker keeps its data on the named volume, not on the container's overlayfs.
    let driver = project.exec(
        "workspace",
        "workspace",
        "docker info --format '{{.Driver}}'",
    );
    assert!(
        driver.ok() && driver.stdout.trim() != "vfs",
        "the inner Docker uses {:?} (expected overlay2 or another non-vfs driver on the \
         /var/lib/docker volume):\n{}",
        driver.stdout.trim(),
        driver.describe()
    );
}
