//! End-to-end tests of the Compose examples (examples/*.yaml) with docker-compose v1 and the
//! outer Docker engine: each test brings a project up under a name unique to this run,
//! checks what a user would check, and removes the project with its volumes in a Drop guard.
//!
//! Environment:
//! - `WS_E2E_IMAGE`: the workspace image to use, as in tests/e2e.rs (built when missing).
//! - `WS_E2E_SKIP=1`: skip (machines without Docker).
//!
//! Engines that refuse `--privileged` ("unable to apply caps") get the near-privileged
//! override file of each example instead.

#[allow(dead_code)]
#[path = "e2e/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{run, Out};

/// `up -d` waits for the daemon's HEALTHCHECK (start period 60 s, then 3 tries 10 s apart).
const UP_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the workspace may take to answer `docker version` once its container runs.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const DOWN_TIMEOUT: Duration = Duration::from_secs(120);
const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// What every test needs: the image, and whether `privileged: true` works on this engine.
struct Env {
    image: String,
    privileged_works: bool,
}

/// The shared end-to-end setup (image built once, privilege flags detected once), plus
/// docker-compose itself. `None` when the run asked to skip (WS_E2E_SKIP=1).
fn env() -> Option<Env> {
    let e = support::e2e()?;
    let compose = run(Command::new("docker-compose").arg("version"), CMD_TIMEOUT);
    assert!(
        compose.ok(),
        "docker-compose (v1) is needed: apt-get install docker-compose\n{}",
        compose.describe()
    );
    Some(Env {
        image: e.image.clone(),
        // The examples say `privileged: true`; engines that refuse it get the override.
        privileged_works: e.privileged == ["--privileged"],
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
    fn exec(&self, user: &str, service: &str, script: &str) -> Out {
        run(
            self.compose()
                .args(["exec", "-T", "-u", user, service, "sh", "-c", script]),
            CMD_TIMEOUT,
        )
    }

    /// Retries `script` until it succeeds or READY_TIMEOUT passes; returns the last try.
    fn exec_until_ok(&self, user: &str, service: &str, script: &str) -> Out {
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
        &env,
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
    let project = Project::new(&env, "ws", "compose.yaml", "compose.near-privileged.yaml");
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
