//! End-to-end tests of the ordered stop and of WS_DOCKER_WAIT giving up, on the workspace
//! image and the outer engine (image and skipping as in tests/e2e.rs: `WS_E2E_IMAGE`,
//! `WS_E2E_SKIP=1`).

#[allow(dead_code)]
#[path = "e2e/support.rs"]
mod support;

use std::time::Instant;
use support::*;

/// A process started with `docker exec` (how editors attach their servers) gets SIGTERM at
/// `docker stop` and the time to finish its cleanup, though it is not in ws-init's tree.
#[test]
fn docker_exec_process_gets_sigterm_and_time_at_stop() {
    let Some(e) = e2e() else { return };
    let dir = host_dir("exec-stop");
    let mount = format!("{}:/shared", dir.path().display());
    let ws = Container::start(
        &unique("exec-stop"),
        &["-v", &mount],
        &e.image,
        &["sleep", "infinity"],
    );
    let out = docker(
        &[
            "exec",
            "-d",
            &ws.name,
            "sh",
            "-c",
            "trap 'echo TERM >> /shared/m; sleep 1; echo done >> /shared/m; exit' TERM; \
             : > /shared/ready; while :; do sleep .1; done",
        ],
        secs(30),
    );
    ws.check(
        out.ok(),
        &format!("docker exec -d failed:\n{}", out.describe()),
    );
    let ready = wait_for(secs(30), || dir.path().join("ready").exists().then_some(()));
    ws.check(
        ready.is_some(),
        "the exec'd process never wrote /shared/ready",
    );
    let started = Instant::now();
    docker_ok(&["stop", &ws.name], secs(60));
    let took = started.elapsed();
    let marks = std::fs::read_to_string(dir.path().join("m")).unwrap_or_default();
    assert_eq!(
        marks,
        "TERM\ndone\n",
        "the exec'd process did not get SIGTERM and its 1 s cleanup (stop took {took:?})\n{}",
        ws.diagnostics()
    );
    assert!(
        took >= secs(1) && took < secs(9),
        "docker stop took {took:?}\n{}",
        ws.diagnostics()
    );
}

/// A main command that ignores SIGTERM (an interactive shell) gets its quarter of the stop
/// budget; dockerd is told to stop then, with its time for the inner containers intact: an
/// inner container needing 3.3 s after SIGTERM finishes its cleanup, and dockerd exits by
/// itself, not SIGKILLed at its deadline.
#[test]
fn term_ignoring_main_command_leaves_inner_containers_their_stop_time() {
    let Some(e) = e2e() else { return };
    let dir = host_dir("slow-stop");
    let mount = format!("{}:/shared", dir.path().display());
    let mut args: Vec<&str> = e.privileged.iter().map(String::as_str).collect();
    args.extend_from_slice(&["-e", "WS_DOCKER_ENABLE_CLIENT=1", "-v", &mount]);
    let ws = Container::start(
        &unique("slow-stop"),
        &args,
        &e.image,
        &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
    );
    ws.wait_docker(90);
    ws.import_busybox("bb");
    ws.sh_ok(
        "docker run -d --name slow -v /shared:/shared bb sh -c \
         'trap \"echo term >> /shared/log; sleep 3.3; echo clean >> /shared/log; exit 0\" TERM; \
          echo ready > /shared/ready; while true; do sleep 1 & wait $!; done'",
        secs(120),
    );
    let ready = wait_for(secs(30), || dir.path().join("ready").exists().then_some(()));
    ws.check(
        ready.is_some(),
        "the inner container never wrote /shared/ready",
    );
    let started = Instant::now();
    docker_ok(&["stop", &ws.name], secs(60));
    let took = started.elapsed();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    let logs = ws.logs();
    assert_eq!(
        log, "term\nclean\n",
        "the inner container's 3.3 s cleanup was cut (stop took {took:?})\n{logs}"
    );
    assert!(
        logs.contains("dockerd stopped: exited")
            && !logs.contains("still stopping at its deadline")
            && !logs.contains("after SIGTERM: sending SIGKILL"),
        "dockerd did not end by itself within its time:\n{logs}"
    );
    assert!(
        logs.contains("main command still running at its stop deadline"),
        "the TERM-ignoring main command was expected to be SIGKILLed at its share:\n{logs}"
    );
    assert!(took < secs(10), "docker stop took {took:?}\n{logs}");
}

/// WS_DOCKER_WAIT with a dockerd that cannot run (not executable): the supervisor gives up at
/// once, and so does the wait: the main command starts within seconds, not after 60.
#[test]
fn docker_wait_ends_when_dockerd_cannot_start() {
    let Some(e) = e2e() else { return };
    let dir = host_dir("wait-noexec");
    let fake = dir.path().join("dockerd");
    std::fs::write(&fake, "not a program\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let bind = format!("{}:/usr/sbin/dockerd:ro", fake.display());
    let mut args: Vec<&str> = e.privileged.iter().map(String::as_str).collect();
    args.extend_from_slice(&[
        "-e",
        "WS_DOCKER_ENABLE_CLIENT=1",
        "-e",
        "WS_DOCKER_WAIT=1",
        "-v",
        &bind,
    ]);
    let started = Instant::now();
    let ws = Container::start(
        &unique("wait-noexec"),
        &args,
        &e.image,
        &["sh", "-c", ": > /tmp/main-started; exec sleep infinity"],
    );
    let main_started = wait_for(secs(90), || {
        ws.exec(None, &["test", "-e", "/tmp/main-started"], secs(10))
            .ok()
            .then_some(())
    });
    let took = started.elapsed();
    let logs = ws.logs();
    assert!(
        main_started.is_some() && took < secs(30),
        "the main command started after {took:?} (or never), not right after dockerd failed:\n{logs}"
    );
    assert!(
        logs.contains("cannot start dockerd") && logs.contains("WS_DOCKER_WAIT"),
        "the log says why the wait ended:\n{logs}"
    );
}

/// dockerd stops each inner container with that container's own stop timeout (10 s unless
/// `--stop-timeout`), so one that ignores SIGTERM would hold dockerd past its deadline. ws-init
/// holds inner containers to the `--shutdown-timeout` dockerd was given: when that has passed,
/// their processes are SIGKILLed from outside, dockerd sees them exit and ends by itself. A
/// container that stops cleanly in 2 s keeps its time; after a restart of the workspace the
/// inner containers are in a consistent state: exited and restartable, and one with
/// `--restart unless-stopped` is running again (its stop was not a manual one).
#[test]
fn term_ignoring_inner_container_is_held_to_the_shutdown_timeout() {
    let Some(e) = e2e() else { return };
    let dir = host_dir("innerstop");
    let mount = format!("{}:/shared", dir.path().display());
    let mut args: Vec<&str> = e.privileged.iter().map(String::as_str).collect();
    args.extend_from_slice(&["-e", "WS_DOCKER_ENABLE_CLIENT=1", "-v", &mount]);
    let ws = Container::start(
        &unique("innerstop"),
        &args,
        &e.image,
        &["sleep", "infinity"],
    );
    ws.wait_docker(90);
    ws.import_busybox("bb");
    let ignoring = "trap \"\" TERM; echo up > /shared/$0; while true; do sleep 1; done";
    ws.sh_ok(
        &format!(
            "docker run -d --name ignorer -v /shared:/shared bb sh -c '{ignoring}' ignorer && \
             docker run -d --name keeper --restart unless-stopped -v /shared:/shared bb \
               sh -c '{ignoring}' keeper && \
             docker run -d --name clean -v /shared:/shared bb sh -c \
             'trap \"echo term >> /shared/log; sleep 2; echo clean >> /shared/log; exit 0\" TERM; \
              echo up > /shared/clean; while true; do sleep 1 & wait $!; done'"
        ),
        secs(120),
    );
    let up = wait_for(secs(30), || {
        ["ignorer", "keeper", "clean"]
            .iter()
            .all(|f| dir.path().join(f).exists())
            .then_some(())
    });
    ws.check(up.is_some(), "the inner containers never wrote /shared/*");
    let started = Instant::now();
    docker_ok(&["stop", &ws.name], secs(60));
    let took = started.elapsed();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    let logs = ws.logs();
    assert!(
        logs.contains("dockerd stopped: exited")
            && !logs.contains("still stopping at its deadline")
            && !logs.contains("after SIGTERM: sending SIGKILL"),
        "dockerd did not end by itself within its time (stop took {took:?}):\n{logs}"
    );
    assert!(
        logs.contains("sent SIGKILL to 2 inner container(s)"),
        "the log does not say that the 2 TERM-ignoring inner containers were killed:\n{logs}"
    );
    assert_eq!(
        log, "term\nclean\n",
        "the clean inner container's 2 s cleanup was cut (stop took {took:?})\n{logs}"
    );
    assert!(took < secs(10), "docker stop took {took:?}\n{logs}");

    docker_ok(&["start", &ws.name], secs(60));
    ws.wait_docker(90);
    let states = |ws: &Container| {
        ws.sh_ok(
            "docker ps -a --format '{{.Names}} {{.State}} {{.Status}}' | sort",
            secs(60),
        )
    };
    // dockerd restarts `unless-stopped` containers in the background once it answers.
    let after = wait_for(secs(30), || {
        let s = states(&ws);
        s.contains("keeper running").then_some(s)
    })
    .unwrap_or_else(|| states(&ws));
    let lines: Vec<&str> = after.lines().collect();
    ws.check(
        lines.len() == 3
            && lines[0].starts_with("clean exited Exited (0)")
            && lines[1].starts_with("ignorer exited Exited (137)")
            && lines[2].starts_with("keeper running"),
        &format!("inner containers after the restart:\n{after}"),
    );
    ws.sh_ok("docker start ignorer clean", secs(60));
    let running = ws.sh_ok(
        "docker ps --format '{{.Names}}' | sort | tr '\\n' ' '",
        secs(60),
    );
    ws.check(
        running == "clean ignorer keeper",
        &format!("after `docker start ignorer clean`, running: {running:?}"),
    );
}
