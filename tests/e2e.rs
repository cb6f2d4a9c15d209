//! End-to-end tests: the workspace image on the outer Docker engine.
//!
//! `cargo test --test e2e` builds the image once per run with image/build.sh (tag
//! ws-init/workspace:e2e), or uses the image named by WS_E2E_IMAGE that tests/run.sh built,
//! and runs each scenario as its own test, concurrently.
//! Docker unusable is a failure, unless WS_E2E_SKIP=1.

#[path = "e2e/support.rs"]
mod support;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};
use support::*;

const WS_HOME: &str = "/home/workspace";

/// Workspace with the inner daemon: `docker` works for the workspace user with limits, ports,
/// bind mounts, and a socket that is root:docker 0660.
#[test]
fn inner_daemon_serves_the_workspace_user() {
    let Some(e) = e2e() else { return };
    let ws = Container::workspace(e, &unique("inner"), &[]);
    ws.wait_docker(90);

    let info = ws.exec_ok(
        Some("workspace"),
        &["docker", "info", "--format", "{{.ServerVersion}}"],
        secs(60),
    );
    ws.check(!info.is_empty(), "docker info printed no server version");

    let sock = ws.exec_ok(
        None,
        &["stat", "-c", "%U:%G %a", "/var/run/docker.sock"],
        secs(30),
    );
    ws.check(
        sock == "root:docker 660",
        &format!("socket is {sock:?}, want \"root:docker 660\""),
    );

    ws.import_busybox("bb");
    ws.check_inner_echo("bb", "hello-inner", "");

    // The limit as the inner container's own cgroup sees it (v2 memory.max, v1 limit_in_bytes).
    let limit = ws.sh_ok(
        "docker run --rm --memory 64m bb sh -c \
         'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes'",
        secs(120),
    );
    ws.check(
        limit == "67108864",
        &format!("memory limit inside the inner container is {limit:?}, want 67108864"),
    );

    // A published port answers from the workspace.
    ws.sh_ok(
        "docker run -d --name web -p 8080:80 bb sh -c \
         'mkdir -p /www && echo hello-port > /www/index.html && exec httpd -f -p 80 -h /www'",
        secs(120),
    );
    let page = wait_for(secs(30), || {
        let out = ws.exec(
            Some("workspace"),
            &[
                "/tmp/busybox",
                "wget",
                "-q",
                "-O",
                "-",
                "http://127.0.0.1:8080/",
            ],
            secs(10),
        );
        out.ok().then(|| out.stdout.trim().to_string())
    });
    ws.check(
        page.as_deref() == Some("hello-port"),
        &format!("published port 8080 answered {page:?}"),
    );

    // A bind mount of a workspace directory is seen inside.
    let seen = ws.sh_ok(
        &format!(
            "mkdir -p {WS_HOME}/bindtest && echo bind-marker > {WS_HOME}/bindtest/f && \
             docker run --rm -v {WS_HOME}/bindtest:/m bb cat /m/f"
        ),
        secs(120),
    );
    ws.check(
        seen == "bind-marker",
        &format!("bind mount showed {seen:?}"),
    );

    // The image's HEALTHCHECK (interval 10 s) reports the running daemon.
    let health = wait_for(secs(60), || {
        let h = ws.inspect("{{.State.Health.Status}}");
        (h == "healthy").then_some(h)
    });
    ws.check(
        health.is_some(),
        &format!(
            "health is {:?}, want healthy",
            ws.inspect("{{json .State.Health}}")
        ),
    );
}

/// DOCKER_TLS_CERTDIR: a second container with only the client/ files reaches the daemon over
/// 2376 with --tlsverify, and is refused without them.
#[test]
fn tls_daemon_needs_the_client_certificates() {
    let Some(e) = e2e() else { return };
    let certs = host_dir("certs");
    let net = Network::create(&unique("tlsnet"));
    let name = unique("tls");
    let alias = format!("{name}-alias");
    let certs_mount = format!("{}:/certs", certs.path().display());
    let san = format!("DNS:{alias}");
    let ws = Container::workspace(
        e,
        &name,
        &[
            "--network",
            &net.name,
            "--network-alias",
            &alias,
            "--hostname",
            &name,
            "-e",
            "DOCKER_TLS_CERTDIR=/certs",
            "-e",
            &format!("DOCKER_TLS_SAN={san}"),
            "-v",
            &certs_mount,
        ],
    );
    ws.wait_docker(120);
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        let p = certs.path().join("client").join(f);
        ws.check(p.exists(), &format!("{} was not written", p.display()));
    }
    let key_mode = std::fs::metadata(certs.path().join("client/key.pem"))
        .unwrap()
        .mode()
        & 0o777;
    ws.check(
        key_mode == 0o644,
        &format!("client/key.pem has mode {key_mode:o}, want 644"),
    );

    // The client sees only client/, read-only; Docker stays disabled there.
    let client_mount = format!("{}:/certs/client:ro", certs.path().join("client").display());
    let client = Container::start(
        &unique("tlsclient"),
        &["--network", &net.name, "-v", &client_mount],
        &e.image,
        &[],
    );
    for host in [&name, &alias] {
        let endpoint = format!("tcp://{host}:2376");
        let out = client.exec(
            Some("workspace"),
            &[
                "docker",
                "--tlsverify",
                "--tlscacert",
                "/certs/client/ca.pem",
                "--tlscert",
                "/certs/client/cert.pem",
                "--tlskey",
                "/certs/client/key.pem",
                "-H",
                &endpoint,
                "version",
                "--format",
                "{{.Server.Version}}",
            ],
            secs(60),
        );
        if !out.ok() || out.stdout.trim().is_empty() {
            ws.fail(&format!(
                "TLS client could not reach {endpoint}:\n{}",
                out.describe()
            ));
        }
    }
    let endpoint = format!("tcp://{name}:2376");
    let plain = client.exec(
        Some("workspace"),
        &["docker", "-H", &endpoint, "version"],
        secs(60),
    );
    ws.check(
        !plain.ok(),
        &format!(
            "a client without certificates was let in:\n{}",
            plain.describe()
        ),
    );
    let ca_only = client.exec(
        Some("workspace"),
        &[
            "docker",
            "--tlsverify",
            "--tlscacert",
            "/certs/client/ca.pem",
            "-H",
            &endpoint,
            "version",
        ],
        secs(60),
    );
    ws.check(
        !ca_only.ok(),
        &format!(
            "a client without a client certificate was let in:\n{}",
            ca_only.describe()
        ),
    );
    drop(client);
    drop(ws);
}

/// Restores the outer socket's group when dropped (only used when it had GID 999).
struct SocketGroup {
    path: &'static str,
    gid: u32,
}

impl Drop for SocketGroup {
    fn drop(&mut self) {
        let _ = nix_chgrp(self.path, self.gid);
    }
}

fn nix_chgrp(path: &str, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(gid))
}

/// Host socket mounted: no inner dockerd; the workspace user gets the socket's GID (which
/// differs from the image's docker group 999) and talks to the outer engine.
#[test]
fn host_socket_is_usable_by_the_workspace_user() {
    let Some(e) = e2e() else { return };
    let sock = "/var/run/docker.sock";
    let meta = std::fs::metadata(sock).expect("outer engine socket");
    // The scenario needs a GID other than the image's 999; change it for the test only.
    let _restore = if meta.gid() == 999 {
        nix_chgrp(sock, 2375).expect("chgrp the outer socket");
        Some(SocketGroup {
            path: sock,
            gid: 999,
        })
    } else {
        None
    };
    let gid = std::fs::metadata(sock).unwrap().gid();
    let name = unique("hostsock");
    let ws = Container::start(
        &name,
        &[
            "-e",
            "WS_DOCKER_ENABLE_CLIENT=1",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
        ],
        &e.image,
        &[],
    );
    ws.wait_docker(60);
    let ps = ws.exec_ok(
        Some("workspace"),
        &["docker", "ps", "--format", "{{.Names}}"],
        secs(60),
    );
    ws.check(
        ps.lines().any(|l| l == name),
        &format!("`docker ps` in the workspace does not list {name}:\n{ps}"),
    );
    ws.exec_ok(Some("workspace"), &["docker", "version"], secs(60));
    let dockerd = ws.exec(None, &["pgrep", "-x", "dockerd"], secs(30));
    ws.check(
        dockerd.code() == Some(1),
        &format!(
            "a dockerd runs inside with a host socket:\n{}",
            dockerd.describe()
        ),
    );
    // The main command (sleep) carries the socket's GID in its supplementary groups.
    let groups = ws.sh_ok(
        "grep '^Groups:' /proc/$(pgrep -x sleep | head -n1)/status",
        secs(30),
    );
    ws.check(
        groups
            .split_whitespace()
            .skip(1)
            .any(|g| g == gid.to_string()),
        &format!("main command's {groups:?} lacks the socket GID {gid}"),
    );
}

/// DOCKER_HOST=tcp://…:2375 at another workspace (DOCKER_TLS_CERTDIR empty: plain TCP).
#[test]
fn remote_docker_host_over_plain_tcp() {
    let Some(e) = e2e() else { return };
    let net = Network::create(&unique("remotenet"));
    let remote_name = unique("remote");
    let remote = Container::workspace(
        e,
        &remote_name,
        &[
            "--network",
            &net.name,
            "--hostname",
            &remote_name,
            "-e",
            "DOCKER_TLS_CERTDIR=",
        ],
    );
    remote.wait_docker(120);
    let host = format!("DOCKER_HOST=tcp://{remote_name}:2375");
    let client = Container::start(
        &unique("remoteclient"),
        &[
            "--network",
            &net.name,
            "-e",
            "WS_DOCKER_ENABLE_CLIENT=1",
            "-e",
            &host,
        ],
        &e.image,
        &[],
    );
    client.wait_docker(60);
    let seen = client.exec_ok(
        Some("workspace"),
        &["docker", "info", "--format", "{{.Name}}"],
        secs(60),
    );
    client.check(
        seen == remote_name,
        &format!("client reached engine {seen:?}, want {remote_name:?}"),
    );
    let dockerd = client.exec(None, &["pgrep", "-x", "dockerd"], secs(30));
    client.check(
        dockerd.code() == Some(1),
        &format!(
            "a dockerd runs in the remote client:\n{}",
            dockerd.describe()
        ),
    );
}

/// Without WS_DOCKER_ENABLE_CLIENT: no Docker work, main command as `workspace`, healthy.
#[test]
fn disabled_runs_no_dockerd() {
    let Some(e) = e2e() else { return };
    let args: Vec<&str> = e.privileged.iter().map(String::as_str).collect();
    let ws = Container::start(&unique("disabled"), &args, &e.image, &[]);
    let user = wait_for(secs(20), || {
        let out = ws.exec(None, &["ps", "-o", "user=", "-C", "sleep"], secs(10));
        out.ok().then(|| out.stdout.trim().to_string())
    });
    ws.check(
        user.as_deref() == Some("workspace"),
        &format!("main command runs as {user:?}, want workspace"),
    );
    // Give a wrongly started dockerd time to show up.
    std::thread::sleep(Duration::from_secs(3));
    let dockerd = ws.exec(None, &["pgrep", "-x", "dockerd"], secs(30));
    ws.check(
        dockerd.code() == Some(1),
        &format!(
            "dockerd runs although Docker is disabled:\n{}",
            dockerd.describe()
        ),
    );
    // The image's HEALTHCHECK must pass when Docker is disabled.
    let health = ws.exec(
        None,
        &["/usr/local/bin/ws-init", "wait-docker", "--timeout", "1"],
        secs(30),
    );
    ws.check(
        health.ok(),
        &format!(
            "healthcheck fails with Docker disabled:\n{}",
            health.describe()
        ),
    );
}

/// WS_DOCKER_WAIT holds the main command back until Docker answers: its very
/// first `docker version`, as the workspace user, succeeds; a SIGHUP during
/// the wait does not stop the workspace.
#[test]
fn docker_wait_starts_the_main_command_once_docker_answers() {
    let Some(e) = e2e() else { return };
    let mut args: Vec<&str> = e.privileged.iter().map(String::as_str).collect();
    args.extend_from_slice(&["-e", "WS_DOCKER_ENABLE_CLIENT=1", "-e", "WS_DOCKER_WAIT=1"]);
    let ws = Container::start(
        &unique("wait"),
        &args,
        &e.image,
        &[
            "sh",
            "-c",
            "docker version >/tmp/first.out 2>&1; echo $? >/tmp/first.rc; exec sleep infinity",
        ],
    );
    let _ = docker(&["kill", "-s", "HUP", &ws.name], secs(30));
    let rc = wait_for(secs(120), || {
        let out = ws.exec(None, &["cat", "/tmp/first.rc"], secs(10));
        out.ok().then(|| out.stdout.trim().to_string())
    });
    let first = ws.exec(None, &["cat", "/tmp/first.out"], secs(10));
    ws.check(
        rc.as_deref() == Some("0"),
        &format!(
            "the main command's first docker call failed (rc {rc:?}):\n{}",
            first.stdout
        ),
    );
    ws.check(
        ws.inspect("{{.State.Running}}") == "true",
        "the workspace stopped (SIGHUP during the wait must not stop it)",
    );
}

/// An invalid WS_DOCKER_ENABLE_CLIENT stops the container quickly with a message naming it.
#[test]
fn invalid_enable_value_fails_fast() {
    let Some(e) = e2e() else { return };
    let ws = Container::start(
        &unique("banana"),
        &["-e", "WS_DOCKER_ENABLE_CLIENT=banana"],
        &e.image,
        &[],
    );
    let started = Instant::now();
    let code = ws.wait_exit(secs(30));
    ws.check(code != 0, "WS_DOCKER_ENABLE_CLIENT=banana exited 0");
    ws.check(
        started.elapsed() < secs(15),
        &format!("took {:?} to fail", started.elapsed()),
    );
    let logs = ws.logs();
    ws.check(
        logs.contains("WS_DOCKER_ENABLE_CLIENT"),
        &format!("the error does not name WS_DOCKER_ENABLE_CLIENT:\n{logs}"),
    );
}

/// Enabled without any privilege: the workspace stays up and says how to run it.
#[test]
fn enabled_without_privilege_keeps_running_and_explains() {
    let Some(e) = e2e() else { return };
    let ws = Container::start(
        &unique("noprivs"),
        &["-e", "WS_DOCKER_ENABLE_CLIENT=1"],
        &e.image,
        &[],
    );
    let logs = wait_for(secs(30), || {
        let l = ws.logs();
        l.contains("--privileged").then_some(l)
    });
    let Some(logs) = logs else {
        ws.fail("no message mentioning --privileged within 30 s")
    };
    std::thread::sleep(Duration::from_secs(2));
    ws.check(ws.running(), "the workspace stopped");
    ws.check(
        ws.inspect("{{.RestartCount}}") == "0",
        "the workspace restarted",
    );
    let sleep = ws.exec(None, &["pgrep", "-x", "sleep"], secs(30));
    ws.check(
        sleep.ok(),
        &format!("the main command is not running:\n{}", sleep.describe()),
    );
    let mentions = logs.lines().filter(|l| l.contains("--privileged")).count();
    ws.check(
        mentions <= 2,
        &format!("the message is repeated {mentions} times:\n{logs}"),
    );
}

/// `docker kill` + `docker start` (stale pid files, a containerd.pid naming a live
/// non-containerd process) and `docker restart` bring Docker back, with the images kept
/// on the volume.
#[test]
fn restart_recovers_docker_and_keeps_images() {
    let Some(e) = e2e() else { return };
    let vol = Volume::create(&unique("restartvol"));
    let mount = format!("{}:/var/lib/docker", vol.name);
    let ws = Container::workspace(e, &unique("restart"), &["-v", &mount]);
    ws.wait_docker(90);
    ws.import_busybox("bb");

    docker_ok(&["kill", &ws.name], secs(60));
    // After a kill, the old containerd pid may belong to anything in the new
    // container (a `docker exec`, the healthcheck); dockerd then waits for a
    // containerd that is not there. Make it certain: pid 1 is always alive.
    let pidfile = std::env::temp_dir().join(format!("{}-containerd.pid", ws.name));
    std::fs::write(&pidfile, "1").unwrap();
    docker_ok(
        &[
            "cp",
            &pidfile.to_string_lossy(),
            &format!("{}:/run/docker/containerd/containerd.pid", ws.name),
        ],
        secs(60),
    );
    let _ = std::fs::remove_file(&pidfile);
    docker_ok(&["start", &ws.name], secs(60));
    ws.wait_docker(90);
    ws.exec_ok(
        Some("workspace"),
        &["docker", "image", "inspect", "bb"],
        secs(30),
    );

    docker_ok(&["restart", &ws.name], secs(120));
    ws.wait_docker(90);
    ws.check_inner_echo("bb", "after-restart", "after restart ");
    drop(ws);
    drop(vol);
}

/// `kill -9` of the inner dockerd: the supervisor starts a new one.
#[test]
fn killed_dockerd_is_restarted() {
    let Some(e) = e2e() else { return };
    let ws = Container::workspace(e, &unique("killd"), &[]);
    ws.wait_docker(90);
    let first = ws.exec_ok(None, &["pgrep", "-x", "dockerd"], secs(30));
    ws.exec_ok(None, &["kill", "-9", &first], secs(30));
    let second = wait_for(secs(90), || {
        let pid = ws.exec(None, &["pgrep", "-x", "dockerd"], secs(10));
        let pid = pid.stdout.trim().to_string();
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
    let Some(second) = second else {
        ws.fail(&format!(
            "no new dockerd answered within 90 s after killing pid {first}"
        ))
    };
    ws.check(second != first, "same dockerd pid");
    ws.check(ws.running(), "the workspace went down with dockerd");
    ws.exec_ok(Some("workspace"), &["docker", "info"], secs(60));
}

/// `docker stop` of the workspace delivers SIGTERM to inner containers (seen in a file on a
/// host directory bind-mounted through both levels) well inside the stop timeout.
#[test]
fn stop_forwards_sigterm_to_inner_containers() {
    let Some(e) = e2e() else { return };
    let dir = host_dir("stop");
    let mount = format!("{}:/shared", dir.path().display());
    let ws = Container::workspace(e, &unique("stop"), &["-v", &mount]);
    ws.wait_docker(90);
    ws.import_busybox("bb");
    check_stop_delivers_sigterm_inside(&ws, dir.path(), "bb");
}

/// The workspace container's exit status is the main command's.
#[test]
fn exit_status_is_the_main_commands() {
    let Some(e) = e2e() else { return };
    let cases: &[(&str, &[&str], i32)] = &[
        ("exit7", &["sh", "-c", "exit 7"], 7),
        ("sigterm", &["sh", "-c", "kill -TERM $$"], 143),
        ("notfound", &["no-such-command-e2e"], 127),
    ];
    for (what, cmd, want) in cases {
        let c = Container::start(&unique(what), &[], &e.image, cmd);
        let code = c.wait_exit(secs(30));
        c.check(
            code == *want,
            &format!("`{}` exited {code}, want {want}", cmd.join(" ")),
        );
    }
}

/// The workspace image inside a workspace gets a working Docker too.
/// The privilege flags for a workspace inside the workspace: the near-privileged set drops
/// SYS_RESOURCE, which the outer workspace's bounding set already lacks, and Docker 25+
/// refuses to drop a capability that is not available ("invalid CapDrop"); `ALL` then
/// means every capability that is.
fn nested_privilege_flags(flags: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < flags.len() {
        if flags[i] == "--cap-drop" && flags.get(i + 1).is_some_and(|c| c == "SYS_RESOURCE") {
            i += 2;
            continue;
        }
        out.push(flags[i].as_str());
        i += 1;
    }
    out
}

#[test]
fn nested_privilege_flags_keep_all_but_the_unavailable_drop() {
    let flags: Vec<String> = [
        "--cap-add",
        "ALL",
        "--cap-drop",
        "SYS_RESOURCE",
        "--security-opt",
        "seccomp=unconfined",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        nested_privilege_flags(&flags),
        ["--cap-add", "ALL", "--security-opt", "seccomp=unconfined"]
    );
}

#[test]
fn nested_workspace_gets_docker() {
    let Some(e) = e2e() else { return };
    let ws = Container::workspace(e, &unique("nested"), &[]);
    ws.wait_docker(90);
    let load = run(
        std::process::Command::new("bash").args([
            "-o",
            "pipefail",
            "-c",
            &format!(
                "docker save {} | docker exec -i {} docker load",
                e.image, ws.name
            ),
        ]),
        secs(600),
    );
    if !load.ok() {
        ws.fail(&format!(
            "cannot load the image into the workspace:\n{}",
            load.describe()
        ));
    }
    ws.import_busybox("bb");
    let mut run_args = vec!["docker", "run", "-d", "--name", "inner"];
    run_args.extend(nested_privilege_flags(&e.privileged));
    run_args.extend([
        "-e",
        "WS_DOCKER_ENABLE_CLIENT=1",
        "-v",
        "innervol:/var/lib/docker",
        e.image.as_str(),
    ]);
    ws.exec_ok(None, &run_args, secs(120));
    let waited = ws.exec(
        None,
        &[
            "docker",
            "exec",
            "inner",
            "ws-init",
            "wait-docker",
            "--timeout",
            "120",
        ],
        secs(180),
    );
    if !waited.ok() {
        let logs = ws.exec(None, &["docker", "logs", "--tail", "60", "inner"], secs(30));
        let dlog = ws.exec(
            None,
            &[
                "docker",
                "exec",
                "inner",
                "tail",
                "-n",
                "60",
                "/var/log/dockerd.log",
            ],
            secs(30),
        );
        ws.fail(&format!(
            "nested Docker did not answer:\n{}\n=== nested logs ===\n{}{}\n=== nested dockerd.log ===\n{}{}",
            waited.describe(),
            logs.stdout,
            logs.stderr,
            dlog.stdout,
            dlog.stderr
        ));
    }
    ws.exec_ok(
        None,
        &[
            "sh",
            "-c",
            "docker save bb | docker exec -i inner docker load",
        ],
        secs(120),
    );
    let out = ws.exec_ok(
        None,
        &[
            "docker",
            "exec",
            "-u",
            "workspace",
            "inner",
            "docker",
            "run",
            "--rm",
            "bb",
            "echo",
            "nested-ok",
        ],
        secs(120),
    );
    ws.check(
        out == "nested-ok",
        &format!("the nested inner container printed {out:?}"),
    );
}

/// docker-compose as `workspace`: two services, one reaches the other by service name.
#[test]
fn compose_two_services() {
    let Some(e) = e2e() else { return };
    let ws = Container::workspace(e, &unique("compose"), &[]);
    ws.wait_docker(90);
    ws.import_busybox("bb");
    let compose = r#"version: "3"
services:
  web:
    image: bb
    command: ["sh", "-c", "mkdir -p /www && echo compose-ok > /www/index.html && exec httpd -f -p 80 -h /www"]
  client:
    image: bb
    command: ["sleep", "3600"]
"#;
    let out = ws.exec_input(
        Some("workspace"),
        &[
            "sh",
            "-c",
            "mkdir -p ~/proj && cat > ~/proj/docker-compose.yml",
        ],
        Some(compose.as_bytes()),
        secs(30),
    );
    ws.check(
        out.ok(),
        &format!("cannot write the compose file:\n{}", out.describe()),
    );
    ws.sh_ok("cd ~/proj && docker-compose up -d", secs(300));
    let page = wait_for(secs(60), || {
        let out = ws.exec(
            Some("workspace"),
            &[
                "sh",
                "-c",
                "cd ~/proj && docker-compose exec -T client wget -q -O - http://web/",
            ],
            secs(60),
        );
        out.ok().then(|| out.stdout.trim().to_string())
    });
    ws.check(
        page.as_deref() == Some("compose-ok"),
        &format!("client got {page:?} from http://web/"),
    );
    ws.sh_ok("cd ~/proj && docker-compose down", secs(120));
}
