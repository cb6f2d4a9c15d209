//! End-to-end: `WS_DOCKER_ROOTLESS=1` on the real engine. The inner dockerd runs as the
//! workspace user through rootlesskit; root in an inner container is not root in the
//! workspace; the daemon survives kill -9 and `docker restart` (images kept on the volume);
//! `docker stop` still reaches inner containers with SIGTERM.

#[path = "e2e/support.rs"]
#[allow(dead_code)]
mod support;

use support::*;

/// An inner image made of the workspace's own dash, coreutils and their libraries
/// (`docker import`, no registry). The host's static busybox is not used: its wget and
/// nslookup crash in inner containers, and the plain tools are all this test needs.
fn import_own_tools(ws: &Container, tag: &str) {
    let script = format!(
        "set -e; r=$(mktemp -d); \
         for b in /bin/sh /bin/dash /bin/sleep /bin/cat /bin/echo /bin/id /bin/ls; do \
           for f in \"$b\" $(ldd \"$b\" | grep -o '/[^ ]*'); do \
             mkdir -p \"$r$(dirname \"$f\")\"; cp -L \"$f\" \"$r$f\"; \
           done; \
         done; \
         mkdir -p \"$r/tmp\" \"$r/etc\" \"$r/proc\" \"$r/sys\" \"$r/dev\"; \
         tar -C \"$r\" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD [\"sh\"]' - {tag} >/dev/null; \
         rm -rf \"$r\"; docker image inspect --format '{{{{.Id}}}}' {tag}"
    );
    ws.sh_ok(&script, secs(180));
}

fn rootless_ws(e: &E2e, name: &str, extra: &[&str]) -> Container {
    let mut args = vec!["-e", "WS_DOCKER_ROOTLESS=1"];
    args.extend_from_slice(extra);
    Container::workspace(e, name, &args)
}

#[test]
fn rootless_docker_is_the_workspace_users_and_survives_kill_restart_and_stop() {
    let Some(e) = e2e() else { return };
    let vol = Volume::create(&unique("rlvol"));
    let dir = host_dir("rlstop");
    let vol_mount = format!("{}:/var/lib/docker", vol.name);
    let dir_mount = format!("{}:/shared", dir.path().display());
    let ws = rootless_ws(
        e,
        &unique("rootless"),
        &["-v", &vol_mount, "-v", &dir_mount],
    );
    // wait-docker (and the HEALTHCHECK) follow the rootless socket.
    ws.wait_docker(120);

    // Plain `docker`, no DOCKER_HOST: the CLI context points at the user's socket.
    let sec = ws.exec_ok(
        Some("workspace"),
        &["docker", "info", "--format", "{{.SecurityOptions}}"],
        secs(60),
    );
    ws.check(
        sec.contains("name=rootless"),
        &format!("docker info security options {sec:?}"),
    );
    let as_root = ws.exec_ok(
        None,
        &["docker", "info", "--format", "{{.SecurityOptions}}"],
        secs(60),
    );
    ws.check(
        as_root.contains("name=rootless"),
        "root's docker CLI does not reach the rootless daemon",
    );
    let owner = ws.exec_ok(None, &["ps", "-o", "user=", "-C", "dockerd"], secs(30));
    ws.check(
        owner == "workspace",
        &format!("dockerd runs as {owner:?}, want workspace"),
    );
    ws.check(
        ws.exec(None, &["test", "-e", "/var/run/docker.sock"], secs(30))
            .code()
            == Some(1),
        "a socket appeared at /var/run/docker.sock (host-socket detection would take it)",
    );
    let sub = ws.exec_ok(
        None,
        &["grep", "^workspace:", "/etc/subuid", "/etc/subgid"],
        secs(30),
    );
    ws.check(
        sub.lines().count() == 2,
        &format!("subordinate ids: {sub:?}"),
    );
    let droot = ws.exec_ok(
        None,
        &[
            "stat",
            "-c",
            "%U %a",
            "/var/lib/docker/rootless/workspace",
            "/var/lib/docker",
        ],
        secs(30),
    );
    ws.check(
        droot
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("workspace "))
            && droot.lines().nth(1).is_some_and(|l| l.starts_with("root ")),
        &format!("data root owners: {droot:?} (want the user's directory in a root-owned volume)"),
    );
    let doctor = ws.exec_ok(None, &["ws-init", "doctor"], secs(60));
    ws.check(
        doctor.contains("rootless inner dockerd") && doctor.contains("resource limits"),
        &format!("doctor:\n{doctor}"),
    );

    import_own_tools(&ws, "own");
    ws.check_inner_echo("own", "hi-rootless", "");

    // Root in an inner container is the workspace user outside: /etc/shadow stays closed.
    let before = ws.exec_ok(None, &["md5sum", "/etc/shadow"], secs(30));
    let attack = ws.exec(
        Some("workspace"),
        &[
            "docker",
            "run",
            "--rm",
            "-v",
            "/etc:/e",
            "own",
            "sh",
            "-c",
            "echo x >> /e/shadow",
        ],
        secs(120),
    );
    ws.check(
        !attack.ok(),
        &format!(
            "writing /etc/shadow from an inner container worked:\n{}",
            attack.describe()
        ),
    );
    ws.check(
        ws.exec_ok(None, &["md5sum", "/etc/shadow"], secs(30)) == before,
        "/etc/shadow changed",
    );

    // kill -9 of the rootless dockerd: the supervisor starts a new one.
    let first = ws.exec_ok(None, &["pgrep", "-x", "dockerd"], secs(30));
    ws.exec_ok(None, &["kill", "-9", &first], secs(30));
    let second = wait_for(secs(90), || {
        let pid = ws
            .exec(None, &["pgrep", "-x", "dockerd"], secs(10))
            .stdout
            .trim()
            .to_string();
        (!pid.is_empty()
            && pid != first
            && ws
                .exec(
                    None,
                    &["ws-init", "wait-docker", "--timeout", "5"],
                    secs(30),
                )
                .ok())
        .then_some(pid)
    });
    ws.check(
        second.is_some(),
        &format!("no new rootless dockerd answered after killing pid {first}"),
    );
    ws.exec_ok(
        Some("workspace"),
        &["docker", "image", "inspect", "own"],
        secs(30),
    );

    // docker restart: images kept on the volume, Docker back.
    docker_ok(&["restart", &ws.name], secs(120));
    ws.wait_docker(120);
    ws.check_inner_echo("own", "after-restart", "after restart ");

    // docker stop: SIGTERM reaches an inner container of the rootless daemon.
    check_stop_delivers_sigterm_inside(&ws, dir.path(), "own");
    drop(ws);
    drop(vol);
}

/// A missing prerequisite (here rootlesskit, hidden under /dev/null: programs are looked up
/// on the fixed root-only search path, not the caller's PATH) leaves the workspace running,
/// and the startup log and doctor say why and how to fix it.
#[test]
fn rootless_without_its_programs_explains_and_keeps_running() {
    let Some(e) = e2e() else { return };
    let mut args: Vec<&str> = e.privileged.iter().map(String::as_str).collect();
    args.extend_from_slice(&[
        "-e",
        "WS_DOCKER_ENABLE_CLIENT=1",
        "-e",
        "WS_DOCKER_ROOTLESS=1",
        // ws-init looks programs up in a fixed root-owned path, not the caller's PATH
        // (hardening): hide two of them behind a character device instead.
        "-v",
        "/dev/null:/usr/bin/rootlesskit:ro",
        "-v",
        "/dev/null:/usr/bin/newuidmap:ro",
    ]);
    let ws = Container::start(
        &unique("rlmissing"),
        &args,
        &e.image,
        &["/bin/sleep", "infinity"],
    );
    let doctor = ws.exec(None, &["ws-init", "doctor"], secs(60));
    ws.check(
        doctor.code() == Some(1),
        &format!("doctor should fail:\n{}", doctor.describe()),
    );
    ws.check(
        doctor.stdout.contains("missing on PATH: rootlesskit") && doctor.stdout.contains("uidmap"),
        &format!(
            "doctor does not name the missing programs and the packages:\n{}",
            doctor.stdout
        ),
    );
    ws.check(ws.running(), "the workspace went down");
    let logs = ws.logs();
    ws.check(
        logs.contains("rootless: missing on PATH"),
        &format!("startup log:\n{logs}"),
    );
}

/// The main command (as the workspace user, no DOCKER_HOST) reaches the rootless daemon.
#[test]
fn rootless_docker_works_in_the_main_command() {
    let Some(e) = e2e() else { return };
    let vol = Volume::create(&unique("rlmainvol"));
    let mount = format!("{}:/var/lib/docker", vol.name);
    let mut args: Vec<&str> = e.privileged.iter().map(String::as_str).collect();
    args.extend_from_slice(&[
        "-e",
        "WS_DOCKER_ENABLE_CLIENT=1",
        "-e",
        "WS_DOCKER_ROOTLESS=1",
        "-e",
        "WS_DOCKER_WAIT=1",
        "-v",
        &mount,
    ]);
    let ws = Container::start(
        &unique("rlmain"),
        &args,
        &e.image,
        &[
            "sh",
            "-c",
            "echo \"user=$(id -un) host=${DOCKER_HOST:-unset}\"; docker info --format 'opts={{.SecurityOptions}}'",
        ],
    );
    let code = ws.wait_exit(secs(120));
    let logs = ws.logs();
    assert_eq!(code, 0, "main command failed:\n{logs}");
    assert!(
        logs.contains("user=workspace host=unset") && logs.contains("name=rootless"),
        "{logs}"
    );
    drop(ws);
    drop(vol);
}

/// A newcomer's `docker run --rm ... IMAGE ws-init doctor`: PID 1 runs doctor itself (as root),
/// so the rootless prerequisites are shown as the workspace would see them, each once.
#[test]
fn rootless_doctor_as_the_images_command_shows_the_prerequisites() {
    let Some(e) = e2e() else { return };
    let mut args: Vec<&str> = vec!["run", "--rm"];
    args.extend(e.privileged.iter().map(String::as_str));
    args.extend_from_slice(&[
        "-e",
        "WS_DOCKER_ENABLE_CLIENT=1",
        "-e",
        "WS_DOCKER_ROOTLESS=1",
        &e.image,
        "ws-init",
        "doctor",
    ]);
    let out = docker(&args, secs(120));
    assert!(out.ok(), "doctor:\n{}", out.describe());
    let text = &out.stdout;
    assert!(
        text.contains("rootless inner dockerd (as workspace)")
            && text.contains("root           yes"),
        "doctor does not show PID 1's (root's) view:\n{text}"
    );
    for prerequisite in [
        "user",
        "user_namespaces",
        "programs",
        "subuid",
        "subgid",
        "tun",
        "storage",
    ] {
        let line = format!("  ok {prerequisite} ");
        assert_eq!(
            text.matches(&line).count(),
            1,
            "prerequisite {prerequisite:?} not shown once as ok:\n{text}"
        );
    }
    assert!(text.contains("resource limits"), "{text}");
}
