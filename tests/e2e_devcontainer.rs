//! End-to-end tests with the real Dev Containers CLI (`@devcontainers/cli`, what VS Code and
//! Codespaces-style tools run): the workspace image as a dev container
//! (examples/devcontainer) and ws-init as a Dev Container Feature (features/ws-init) applied
//! to a plain Debian base.
//!
//! The CLI is taken from `PATH` when it is there, else installed with npm into
//! `~/.cache/ws-init/devcontainers-cli` (not globally). No npm and no CLI is a failure with
//! the fix in the message, never a silent skip.
//!
//! Environment: `WS_E2E_IMAGE` (the workspace image, as in tests/e2e.rs), `WS_E2E_SKIP=1`.
//! Engines that refuse `--privileged` ("unable to apply caps") get a test copy of the
//! configuration where `privileged: true` is swapped for the near-privileged flags in
//! `runArgs`. Everything a test creates (containers, volumes, images the CLI built, the
//! workspace folder) is removed by a guard, also when the test fails.

#[allow(dead_code)]
#[path = "e2e/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use support::{docker, run, secs, Out};

/// The npm package and the versions these tests are written against.
const CLI_PACKAGE: &str = "@devcontainers/cli@>=0.89.0 <1";
const CLI_MIN_VERSION: (u64, u64) = (0, 89);
const NPM_TIMEOUT: Duration = Duration::from_secs(300);
/// `devcontainer up` of the workspace image: container start plus postCreateCommand.
const UP_TIMEOUT: Duration = Duration::from_secs(180);
/// `devcontainer up` with the Feature: the image build installs Docker from Debian packages.
const FEATURE_UP_TIMEOUT: Duration = Duration::from_secs(420);
const EXEC_TIMEOUT: Duration = Duration::from_secs(120);

/// The flags `privileged: true` is swapped for where the engine refuses it.
fn near_privileged_run_args(e: &support::E2e) -> Option<String> {
    if e.privileged == ["--privileged"] {
        return None;
    }
    let quoted: Vec<String> = e.privileged.iter().map(|f| format!("{f:?}")).collect();
    Some(format!("\"runArgs\": [{}]", quoted.join(", ")))
}

// ---------------------------------------------------------------------------------------------
// The CLI

static CLI: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The `devcontainer` program: PATH, else the cache prefix, else installed there with npm.
fn cli() -> &'static Path {
    match CLI.get_or_init(find_or_install_cli) {
        Ok(p) => p,
        Err(msg) => panic!("the Dev Containers CLI is needed for these tests: {msg}"),
    }
}

fn cache_prefix() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("ws-init/devcontainers-cli")
}

/// `(major, minor)` of `devcontainer --version`'s `0.89.0`.
fn parse_version(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn usable(program: &Path) -> Result<(), String> {
    let out = run(Command::new(program).arg("--version"), secs(60));
    if !out.ok() {
        return Err(out.describe());
    }
    match parse_version(&out.stdout) {
        Some(v) if v >= CLI_MIN_VERSION => Ok(()),
        _ => Err(format!(
            "{} is version {:?}; these tests need {}.{} or newer",
            program.display(),
            out.stdout.trim(),
            CLI_MIN_VERSION.0,
            CLI_MIN_VERSION.1
        )),
    }
}

fn find_or_install_cli() -> Result<PathBuf, String> {
    let on_path = run(
        Command::new("sh").args(["-c", "command -v devcontainer"]),
        secs(10),
    );
    if on_path.ok() {
        let p = PathBuf::from(on_path.stdout.trim());
        if usable(&p).is_ok() {
            return Ok(p);
        }
    }
    let prefix = cache_prefix();
    let cached = prefix.join("node_modules/.bin/devcontainer");
    if cached.exists() && usable(&cached).is_ok() {
        return Ok(cached);
    }
    let npm = run(Command::new("npm").arg("--version"), secs(60));
    if !npm.ok() {
        return Err(format!(
            "no `devcontainer` on PATH and no npm to install it: apt-get install nodejs npm \
             (node 18 or newer), or npm install -g @devcontainers/cli\n{}",
            npm.describe()
        ));
    }
    std::fs::create_dir_all(&prefix).map_err(|e| format!("mkdir {}: {e}", prefix.display()))?;
    eprintln!("installing {CLI_PACKAGE} into {}", prefix.display());
    let install = run(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(CLI_PACKAGE),
        NPM_TIMEOUT,
    );
    if !install.ok() {
        return Err(format!(
            "npm could not install {CLI_PACKAGE} (is the npm registry reachable?)\n{}",
            install.describe()
        ));
    }
    usable(&cached)?;
    Ok(cached)
}

// ---------------------------------------------------------------------------------------------
// A dev container made by the CLI, removed with everything it created when dropped

struct DevContainer {
    /// The workspace folder (holds `.devcontainer/`).
    dir: tempfile::TempDir,
    /// Untagged images present before `up`: the legacy builder's stages are new ones.
    dangling_before: Vec<String>,
}

impl DevContainer {
    /// A workspace folder whose `.devcontainer/` the caller fills in.
    fn new(what: &str) -> DevContainer {
        let dir = support::host_dir(what);
        std::fs::create_dir(dir.path().join(".devcontainer")).expect("mkdir .devcontainer");
        DevContainer {
            dir,
            dangling_before: dangling_images(),
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join(".devcontainer")
    }

    fn folder(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    /// `devcontainer up`; panics with its output (and the container's log) when it fails.
    fn up(&self, timeout: Duration) -> Out {
        let out = run(
            Command::new(cli())
                .args(["up", "--workspace-folder"])
                .arg(self.dir.path()),
            timeout,
        );
        if !out.ok() || !out.stdout.contains("\"outcome\":\"success\"") {
            panic!(
                "devcontainer up failed:\n{}\n{}",
                out.describe(),
                self.container_log()
            );
        }
        out
    }

    /// `devcontainer exec` (as the remote user) of `sh -c SCRIPT`.
    fn exec(&self, script: &str) -> Out {
        run(
            Command::new(cli())
                .args(["exec", "--workspace-folder"])
                .arg(self.dir.path())
                .args(["sh", "-c", script]),
            EXEC_TIMEOUT,
        )
    }

    fn exec_ok(&self, script: &str) -> String {
        let out = self.exec(script);
        if !out.ok() {
            panic!(
                "devcontainer exec failed:\n{}\n{}",
                out.describe(),
                self.container_log()
            );
        }
        out.stdout.trim().to_string()
    }

    /// Ids of this workspace folder's containers (the CLI labels them with the folder).
    fn containers(&self) -> Vec<String> {
        let label = format!("label=devcontainer.local_folder={}", self.folder());
        docker(&["ps", "-aq", "--filter", &label], secs(30))
            .stdout
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    fn container(&self) -> String {
        let ids = self.containers();
        assert_eq!(ids.len(), 1, "one dev container expected, found {ids:?}");
        ids[0].clone()
    }

    /// `docker exec` as root, bypassing the CLI (setup and inspection).
    fn root_exec(&self, script: &str) -> Out {
        docker(
            &["exec", &self.container(), "sh", "-c", script],
            EXEC_TIMEOUT,
        )
    }

    fn container_log(&self) -> String {
        let mut s = String::new();
        for id in self.containers() {
            let logs = docker(&["logs", "--tail", "60", &id], secs(30));
            s.push_str(&format!(
                "=== docker logs --tail 60 {id} ===\n{}{}\n",
                logs.stdout, logs.stderr
            ));
            let d = docker(
                &["exec", &id, "tail", "-n", "40", "/var/log/dockerd.log"],
                secs(30),
            );
            s.push_str(&format!(
                "=== dockerd.log (tail) ===\n{}{}\n",
                d.stdout, d.stderr
            ));
        }
        s
    }

    /// Imports a busybox image named `tag` into the inner engine, as the remote user, from
    /// the host's static busybox (no registry needed).
    fn import_busybox(&self, tag: &str) {
        let id = self.container();
        let busybox = support::host_busybox();
        let cp = docker(
            &[
                "cp",
                &busybox.to_string_lossy(),
                &format!("{id}:/tmp/busybox"),
            ],
            secs(60),
        );
        assert!(cp.ok(), "docker cp busybox:\n{}", cp.describe());
        let chmod = self.root_exec("chmod 0755 /tmp/busybox");
        assert!(chmod.ok(), "{}", chmod.describe());
        self.exec_ok(&format!(
            "set -e; r=$(mktemp -d); mkdir \"$r/bin\" \"$r/tmp\" \"$r/etc\"; \
             cp /tmp/busybox \"$r/bin/busybox\"; \
             for a in $(/tmp/busybox --list); do [ \"$a\" = busybox ] || ln -s busybox \"$r/bin/$a\"; done; \
             tar -C \"$r\" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD [\"sh\"]' - {tag} >/dev/null; \
             rm -rf \"$r\""
        ));
    }
}

/// Ids of the untagged top-level images.
fn dangling_images() -> Vec<String> {
    docker(
        &["images", "-q", "--no-trunc", "--filter", "dangling=true"],
        secs(30),
    )
    .stdout
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

impl Drop for DevContainer {
    fn drop(&mut self) {
        for id in self.containers() {
            // Named volumes (the /var/lib/docker one) are not removed by `rm -v`.
            let volumes = docker(
                &[
                    "inspect",
                    "--format",
                    "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}",
                    &id,
                ],
                secs(30),
            )
            .stdout;
            let _ = docker(&["rm", "-f", "-v", &id], secs(120));
            for v in volumes.split_whitespace() {
                let _ = docker(&["volume", "rm", "-f", v], secs(60));
            }
        }
        // The images the CLI built for this folder: `vsc-<folder name>-…` (unique to the
        // folder), its scratch image of Feature contents (a fixed name it overwrites on every
        // build), and the untagged stages of the legacy builder's multi-stage build that are
        // new since `new` (their history copies the Features to /tmp/build-features).
        let name = self
            .dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let tagged = docker(
            &["images", "--format", "{{.Repository}}:{{.Tag}}"],
            secs(30),
        )
        .stdout;
        let mut remove: Vec<String> = tagged
            .lines()
            .filter(|t| {
                t.starts_with(&format!("vsc-{name}"))
                    || t.starts_with("dev_container_feature_content_temp:")
            })
            .map(str::to_string)
            .collect();
        for id in dangling_images() {
            if self.dangling_before.contains(&id) {
                continue;
            }
            let history = docker(
                &["history", "--no-trunc", "--format", "{{.CreatedBy}}", &id],
                secs(30),
            )
            .stdout;
            if history.contains("/tmp/build-features") {
                remove.push(id);
            }
        }
        if !remove.is_empty() {
            let mut args = vec!["rmi"];
            args.extend(remove.iter().map(String::as_str));
            let _ = docker(&args, secs(120));
        }
    }
}

/// `text` with `from` replaced by `to`, which must occur exactly once.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected exactly one {from:?} in:\n{text}"
    );
    text.replacen(from, to, 1)
}

fn repo() -> PathBuf {
    support::repo_root()
}

// ---------------------------------------------------------------------------------------------
// The workspace image as a dev container

#[test]
fn devcontainer_workspace_image_runs_inner_docker_and_compose() {
    let Some(e) = support::e2e() else { return };
    let dc = DevContainer::new("dc-image");
    // A test copy of the example: the image under test, and where the engine refuses
    // `--privileged`, the near-privileged flags instead.
    let example = std::fs::read_to_string(
        repo().join("examples/devcontainer/.devcontainer/devcontainer.json"),
    )
    .expect("read the example");
    let mut config = replace_once(
        &example,
        "\"image\": \"ws-init/workspace:dev\"",
        &format!("\"image\": {:?}", e.image),
    );
    if let Some(run_args) = near_privileged_run_args(e) {
        config = replace_once(&config, "\"privileged\": true", &run_args);
    }
    std::fs::write(dc.config_dir().join("devcontainer.json"), config).expect("write config");

    let up = dc.up(UP_TIMEOUT);
    assert!(
        up.stdout.contains("\"remoteUser\":\"workspace\""),
        "{}",
        up.describe()
    );
    // The postCreateCommand ran, after ws-init wait-docker, against the inner engine.
    assert!(
        up.stderr.contains("inner Docker") && up.stderr.contains("is ready"),
        "postCreateCommand's output missing:\n{}",
        up.describe()
    );
    // ws-init is PID 1 (overrideCommand: false keeps the image's ENTRYPOINT).
    let pid1 = dc.root_exec("cat /proc/1/comm");
    assert_eq!(pid1.stdout.trim(), "ws-init", "{}", pid1.describe());

    assert_eq!(dc.exec_ok("id -un"), "workspace");
    dc.import_busybox("wse2e-busybox");
    let inner = dc.exec_ok("docker run --rm wse2e-busybox sh -c 'echo inner-ok'");
    assert_eq!(inner, "inner-ok");

    // docker compose (v2 plugin) as the remote user, in the workspace folder.
    std::fs::write(
        dc.dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: wse2e-busybox\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n",
    )
    .expect("write compose.yaml");
    let compose = dc.exec_ok(
        "set -e; docker compose -p wse2edc up -d; \
         docker compose -p wse2edc ps --format '{{.Service}} {{.State}}'; \
         docker compose -p wse2edc down -v >&2",
    );
    assert_eq!(compose, "web running");
}

// ---------------------------------------------------------------------------------------------
// ws-init as a Dev Container Feature on a plain Debian base

/// The plain Debian trixie base the Feature is applied to: the local one image/build.sh makes
/// when no registry is reachable, else the registry's.
fn plain_debian_base() -> String {
    for image in ["ws-init/debian-base:trixie", "debian:trixie-slim"] {
        if docker(&["image", "inspect", image], secs(30)).ok() {
            return image.to_string();
        }
    }
    panic!(
        "no Debian trixie base image: run `WS_BASE_SUITE=trixie image/build.sh` (it makes \
         ws-init/debian-base:trixie when debian:trixie-slim cannot be pulled)"
    )
}

/// `.devcontainer/ws-init/`: the Feature as in the repository, with the ws-init and
/// ws-init-bringup binaries of the image under test (image/build.sh copies the same binaries
/// into features/ws-init/). Where the
/// engine refuses `--privileged`, the copy drops `"privileged": true` (the caller puts the
/// near-privileged flags into runArgs).
fn copy_feature(e: &support::E2e, to: &Path) {
    let from = repo().join("features/ws-init");
    std::fs::create_dir_all(to).expect("mkdir feature");
    for name in ["install.sh", "entrypoint.sh", "wait-docker.sh"] {
        std::fs::copy(from.join(name), to.join(name)).expect("copy feature file");
    }
    let mut manifest =
        std::fs::read_to_string(from.join("devcontainer-feature.json")).expect("read manifest");
    if near_privileged_run_args(e).is_some() {
        manifest = replace_once(&manifest, "\"privileged\": true,", "");
    }
    std::fs::write(to.join("devcontainer-feature.json"), manifest).expect("write manifest");
    let id = support::docker_ok(&["create", &e.image], secs(60));
    let copies: Vec<_> = [
        ("/usr/local/bin/ws-init", "ws-init"),
        (
            "/usr/local/libexec/ws-init/ws-init-bringup",
            "ws-init-bringup",
        ),
    ]
    .into_iter()
    .map(|(inside, name)| {
        let cp = docker(
            &[
                "cp",
                &format!("{id}:{inside}"),
                &to.join(name).to_string_lossy(),
            ],
            secs(60),
        );
        (inside, cp)
    })
    .collect();
    let _ = docker(&["rm", "-f", &id], secs(60));
    for (inside, cp) in copies {
        assert!(
            cp.ok(),
            "cannot copy {inside} out of {}:\n{}",
            e.image,
            cp.describe()
        );
    }
}

#[test]
fn feature_on_plain_debian_gives_remote_user_docker_at_once() {
    let Some(e) = support::e2e() else { return };
    let dc = DevContainer::new("dc-feature");
    let cfg = dc.config_dir();
    copy_feature(e, &cfg.join("ws-init"));
    // A user for remoteUser, and a dockerd that takes 5 s longer to answer (as with a slow
    // disk or a busy CI runner; the real dockerd after a sleep, first on PATH): the CLI starts
    // lifecycle commands a second or two after the container, so without the Feature's wait
    // hooks the postCreateCommand below would reach no daemon, deterministically.
    std::fs::write(
        cfg.join("Dockerfile"),
        format!(
            "FROM {}\nRUN useradd --create-home --uid 1000 --shell /bin/sh dev && \\\n    \
             printf '#!/bin/sh\\nsleep 5\\nexec /usr/sbin/dockerd \"$@\"\\n' >/usr/local/bin/dockerd && \\\n    \
             chmod 0755 /usr/local/bin/dockerd\n",
            plain_debian_base()
        ),
    )
    .expect("write Dockerfile");
    // Lifecycle commands that use docker at once, without any wait of their own: the
    // Feature's hooks must have put them after Docker's start.
    let run_args = near_privileged_run_args(e)
        .map(|r| format!("{r},\n  "))
        .unwrap_or_default();
    std::fs::write(
        cfg.join("devcontainer.json"),
        format!(
            r#"{{
  "build": {{ "dockerfile": "Dockerfile" }},
  "features": {{ "./ws-init": {{ "dockerdArgs": "--label 'ws-e2e=feature option'", "startTimeout": "90" }} }},
  "remoteUser": "dev",
  {run_args}"postCreateCommand": "docker version --format '{{{{.Server.Version}}}}' > /tmp/post-create",
  "postStartCommand": "docker ps -q > /dev/null && echo started >> /tmp/post-start"
}}
"#
        ),
    )
    .expect("write devcontainer.json");

    dc.up(FEATURE_UP_TIMEOUT);
    let server = dc.exec_ok("cat /tmp/post-create");
    assert!(
        server.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "postCreateCommand did not reach the inner engine: {server:?}"
    );
    assert_eq!(dc.exec_ok("cat /tmp/post-start"), "started");

    // The remote user has Docker through the docker group, without root.
    assert_eq!(dc.exec_ok("id -un"), "dev");
    let groups = dc.exec_ok("id -Gn");
    assert!(groups.split_whitespace().any(|g| g == "docker"), "{groups}");
    let gid = dc.exec_ok("getent group docker | cut -d: -f3");
    assert_eq!(gid, "999", "docker group gid");

    // The CLI's shell is PID 1; dockerd runs under ws-init's detached supervisor.
    let tree = dc.root_exec(
        "set -e; s=$(cat /run/ws-init-docker.pid); echo \"$(cat /proc/1/comm) $(cat /proc/$s/comm)\"; \
         d=$(pidof dockerd); cut -d' ' -f4 /proc/$d/stat | grep -qx \"$s\" && echo dockerd-child",
    );
    assert!(tree.ok(), "{}", tree.describe());
    assert_eq!(
        tree.stdout.trim(),
        "sh ws-init\ndockerd-child",
        "{}",
        tree.describe()
    );

    dc.import_busybox("wse2e-busybox");
    assert_eq!(
        dc.exec_ok("docker run --rm wse2e-busybox sh -c 'echo inner-ok'"),
        "inner-ok"
    );
    // The dockerdArgs option reached dockerd, its quotes honoured.
    assert_eq!(
        dc.exec_ok("docker info --format '{{json .Labels}}'"),
        r#"["ws-e2e=feature option"]"#
    );
    let tools = dc.exec_ok("docker compose version --short && docker buildx version");
    assert!(tools.starts_with('2'), "compose v2 expected: {tools}");

    // The supervisor is the child subreaper of its subtree: an inner container's shim (which
    // double-forks away from containerd) is its child, and is reaped when the container ends.
    dc.exec_ok("docker run -d --name wse2e-sleeper wse2e-busybox sleep 300 >/dev/null");
    let shim_parent = dc.root_exec(
        "set -e; s=$(cat /run/ws-init-docker.pid); p=$(pidof containerd-shim-runc-v2); \
         [ \"$(cut -d' ' -f4 /proc/$p/stat)\" = \"$s\" ] && echo shim-under-supervisor",
    );
    assert_eq!(
        shim_parent.stdout.trim(),
        "shim-under-supervisor",
        "{}",
        shim_parent.describe()
    );
    dc.exec_ok("docker rm -f wse2e-sleeper >/dev/null");
    let zombies = dc.root_exec(
        "s=$(cat /run/ws-init-docker.pid); i=0; \
         while pidof containerd-shim-runc-v2 >/dev/null || grep -l \"^[0-9]* (.*) Z $s \" /proc/[0-9]*/stat; do \
           i=$((i+1)); [ $i -lt 50 ] || exit 1; sleep 0.2; done",
    );
    assert!(
        zombies.ok(),
        "the shim was not reaped:\n{}",
        zombies.describe()
    );

    // dockerd killed: the supervisor restarts it (backoff) and Docker answers again.
    let restarted = dc.root_exec(
        "set -e; . /usr/local/share/ws-init/feature.env; old=$(pidof dockerd); kill -9 $old; \
         i=0; while kill -0 $old 2>/dev/null; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done; \
         ws-init wait-docker --timeout 60; new=$(pidof dockerd); [ \"$new\" != \"$old\" ] && \
         [ \"$(cut -d' ' -f4 /proc/$new/stat)\" = \"$(cat /run/ws-init-docker.pid)\" ] && echo restarted",
    );
    assert_eq!(
        restarted.stdout.trim(),
        "restarted",
        "{}\n{}",
        restarted.describe(),
        dc.container_log()
    );

    // A restart runs the entrypoint again (a new supervisor takes the lock of the old pid
    // file) and `up` runs postStartCommand again, once more using docker at once.
    let id = dc.container();
    support::docker_ok(&["restart", "-t", "2", &id], secs(120));
    dc.up(UP_TIMEOUT);
    assert_eq!(dc.exec_ok("cat /tmp/post-start"), "started\nstarted");

    // A second start-docker finds the supervisor's lock and only waits for Docker.
    let again =
        dc.root_exec(". /usr/local/share/ws-init/feature.env && ws-init start-docker --timeout 10");
    assert!(
        again.ok() && again.stderr.contains("already supervised by pid"),
        "{}",
        again.describe()
    );
    let supervisors = dc.root_exec("grep -l '^ws-init$' /proc/[0-9]*/comm | wc -l");
    assert_eq!(supervisors.stdout.trim(), "1", "{}", supervisors.describe());

    // SIGTERM to the supervisor stops dockerd cleanly and ends the supervisor.
    let stop = dc.root_exec(
        "set -e; s=$(cat /run/ws-init-docker.pid); kill -TERM \"$s\"; i=0; \
         while [ -e /proc/$s ] || pidof dockerd >/dev/null; do i=$((i+1)); [ $i -lt 200 ] || exit 1; sleep 0.1; done",
    );
    assert!(
        stop.ok(),
        "supervisor did not stop:\n{}\n{}",
        stop.describe(),
        dc.container_log()
    );
    let logs = docker(&["logs", &id], secs(30));
    assert!(
        logs.stderr.contains("dockerd stopped") || logs.stdout.contains("dockerd stopped"),
        "no clean stop in the container's log:\n{}{}",
        support::tail(&logs.stdout, 30),
        support::tail(&logs.stderr, 30)
    );
}
