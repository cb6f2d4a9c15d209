//! End to end: inner containers resolve what the workspace resolves. The workspace sits on
//! a user-defined outer network next to a sibling service (with an alias), so its resolver
//! is the outer engine's embedded DNS at 127.0.0.11. Inner containers on the default bridge,
//! on an inner user-defined network, and in an inner Compose project must all resolve the
//! sibling by name, also after dockerd was killed and after the workspace was restarted.
//!
//! Inner images: busybox-static's nslookup crashes in inner containers (static glibc NSS), so
//! the inner image is made from the workspace's own bash, getent and their libraries.

#[allow(dead_code)]
#[path = "e2e/support.rs"]
mod support;

use support::{docker_ok, e2e, secs, unique, Container, E2e, Network, Volume};

/// Builds `inner:dns` inside the workspace from its own binaries (`docker import`).
const MAKE_INNER_IMAGE: &str = r#"
set -euo pipefail
d=$(mktemp -d)
files=(/usr/bin/bash /usr/bin/getent /usr/bin/sleep /usr/bin/cat)
for f in "${files[@]}" $(ldd "${files[@]}" | awk '/=>/ {print $3} /^\t\// {print $1}' | sort -u); do
  cp --parents -L "$f" "$d"
done
mkdir -p "$d/etc" "$d/bin" "$d/tmp"
ln -s /usr/bin/bash "$d/bin/sh"
echo 'hosts: files dns' > "$d/etc/nsswitch.conf"
tar -C "$d" -c . | docker import - inner:dns >/dev/null
rm -rf "$d"
"#;

/// `docker compose` (v2 plugin, trixie) or `docker-compose` (v1, bookworm), in /tmp/proj.
const DC: &str = "cd /tmp/proj && dc() { if docker compose version >/dev/null 2>&1; then docker compose \"$@\"; else docker-compose \"$@\"; fi; } && dc -p dnsproj";

const COMPOSE: &str = r#"
services:
  api:
    image: inner:dns
    command: ["sleep", "300"]
  web:
    image: inner:dns
    command: ["sleep", "300"]
"#;

/// The sibling service `name` on the outer network `net` (with `extra` docker run flags), and
/// its address there.
fn start_sibling(e: &E2e, net: &Network, name: &str, extra: &[&str]) -> (Container, String) {
    let mut args = vec!["--network", net.name.as_str()];
    args.extend_from_slice(extra);
    let db = Container::start(name, &args, &e.image, &["sleep", "infinity"]);
    let ip = db.inspect(&format!(
        "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
        net.name
    ));
    assert!(!ip.is_empty(), "sibling has no address on {}", net.name);
    (db, ip)
}

/// `getent hosts NAME` in a fresh inner container; the address it prints.
fn inner_lookup(ws: &Container, network: &str, name: &str) -> String {
    inner_lookup_as(ws, None, network, name)
}

/// `inner_lookup` through `user`'s docker CLI.
fn inner_lookup_as(ws: &Container, user: Option<&str>, network: &str, name: &str) -> String {
    let out = ws.exec_ok(
        user,
        &[
            "docker",
            "run",
            "--rm",
            "--network",
            network,
            "inner:dns",
            "getent",
            "hosts",
            name,
        ],
        secs(90),
    );
    out.split_whitespace().next().unwrap_or("").to_string()
}

#[test]
fn inner_containers_resolve_the_workspaces_sibling_services() {
    let Some(e) = e2e() else { return };
    let net = Network::create(&unique("dnsnet"));
    let sibling = unique("db");
    let alias = format!("{sibling}-alias");
    let (db, db_ip) = start_sibling(e, &net, &sibling, &["--network-alias", &alias]);
    let ws = Container::workspace(e, &unique("dnsws"), &["--network", &net.name]);
    ws.wait_docker(120);

    let made = ws.exec_input(
        None,
        &["bash", "-s"],
        Some(MAKE_INNER_IMAGE.as_bytes()),
        secs(120),
    );
    assert!(made.ok(), "inner image:\n{}", made.describe());
    ws.exec_ok(None, &["docker", "network", "create", "innernet"], secs(60));

    let check = |when: &str| {
        for network in ["bridge", "innernet"] {
            for name in [&sibling, &alias] {
                let got = inner_lookup(&ws, network, name);
                if got != db_ip {
                    ws.fail(&format!(
                        "{when}: an inner container on {network} resolved {name} to {got:?}, want {db_ip}"
                    ));
                }
            }
        }
    };
    check("first start");

    // The workspace itself resolves the sibling through 127.0.0.11, and doctor says why
    // inner containers get a forwarder.
    let resolv = ws.exec_ok(None, &["cat", "/etc/resolv.conf"], secs(30));
    assert!(resolv.contains("127.0.0.11"), "{resolv}");
    let doctor = ws.exec_ok(None, &["ws-init", "doctor"], secs(60));
    assert!(
        doctor.contains(
            "inner dns      forwarder — the workspace resolves through loopback 127.0.0.11"
        ),
        "{doctor}"
    );

    // An inner Compose project: its services find each other and the sibling.
    let project = ws.exec_input(
        None,
        &[
            "bash",
            "-c",
            &format!("mkdir -p /tmp/proj && cat > /tmp/proj/docker-compose.yaml && {DC} up -d"),
        ],
        Some(COMPOSE.as_bytes()),
        secs(180),
    );
    assert!(project.ok(), "compose up:\n{}", project.describe());
    for name in ["api", sibling.as_str()] {
        let out = ws.exec(
            None,
            &[
                "bash",
                "-c",
                &format!("{DC} exec -T web getent hosts {name}"),
            ],
            secs(60),
        );
        if !out.ok() {
            ws.fail(&format!(
                "compose service web cannot resolve {name}:\n{}",
                out.describe()
            ));
        }
        if name == sibling {
            assert!(out.stdout.starts_with(&db_ip), "{}", out.stdout);
        }
    }
    let _ = ws.exec(None, &["bash", "-c", &format!("{DC} down -t 0")], secs(120));

    // dockerd killed: ws-init restarts it with the same flags, the forwarder never stopped.
    ws.exec_ok(None, &["sh", "-c", "kill -9 $(pidof dockerd)"], secs(30));
    std::thread::sleep(secs(2));
    ws.wait_docker(120);
    check("after a dockerd restart");

    // The whole workspace restarted: ws-init plans and starts the forwarder again (the
    // address may have changed), inner containers made before resolve with the new one.
    docker_ok(&["restart", "-t", "10", &ws.name], secs(120));
    ws.wait_docker(120);
    check("after docker restart");
    drop(ws);
    drop(db);
}

/// Rootless mode: dockerd runs in rootlesskit's network namespace behind slirp4netns with
/// `--disable-host-loopback`, so the forwarder listens on the workspace's own eth0 address
/// and inner containers reach it through slirp, not through the workspace's bridge.
#[test]
fn rootless_inner_containers_resolve_the_sibling_through_the_dns_forwarder() {
    let Some(e) = e2e() else { return };
    let net = Network::create(&unique("rldnsnet"));
    let vol = Volume::create(&unique("rldnsvol"));
    let sibling = unique("rldb");
    let (db, db_ip) = start_sibling(e, &net, &sibling, &[]);
    let vol_mount = format!("{}:/var/lib/docker", vol.name);
    let ws = Container::workspace(
        e,
        &unique("rldnsws"),
        &[
            "--network",
            &net.name,
            "-e",
            "WS_DOCKER_ROOTLESS=1",
            "-v",
            &vol_mount,
        ],
    );
    ws.wait_docker(120);
    let doctor = ws.exec_ok(None, &["ws-init", "doctor"], secs(60));
    ws.check(
        doctor.contains("rootless inner dockerd") && doctor.contains("inner dns      forwarder"),
        &format!("doctor:\n{doctor}"),
    );

    let made = ws.exec_input(
        Some("workspace"),
        &["bash", "-s"],
        Some(MAKE_INNER_IMAGE.as_bytes()),
        secs(120),
    );
    assert!(made.ok(), "inner image:\n{}", made.describe());
    ws.exec_ok(
        Some("workspace"),
        &["docker", "network", "create", "innernet"],
        secs(60),
    );
    for network in ["bridge", "innernet"] {
        let got = inner_lookup_as(&ws, Some("workspace"), network, &sibling);
        eprintln!("{network}: {got}");
        if got != db_ip {
            ws.fail(&format!(
                "rootless: an inner container on {network} resolved {sibling} to {got:?}, want {db_ip}"
            ));
        }
    }
    drop(ws);
    drop(db);
}
