//! End-to-end test of moving a workspace to a newer image: a `/var/lib/docker` volume written
//! by the older image's dockerd (bookworm: Docker 20.10) keeps its images and their data when
//! the workspace is recreated from the newer image (trixie: Docker 26).
//!
//! Environment (both or neither; .ci/run sets them once both images are built):
//! - `WS_E2E_MIGRATE_FROM`: the older image's tag.
//! - `WS_E2E_MIGRATE_TO`: the newer image's tag.
//!
//! Without them the test says so and passes without running; with them, an image that does
//! not exist is a failure.

#[allow(dead_code)]
#[path = "e2e/support.rs"]
mod support;

use support::*;

/// The two image tags, or `None` when neither variable is set.
fn images() -> Option<(String, String)> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (get("WS_E2E_MIGRATE_FROM"), get("WS_E2E_MIGRATE_TO")) {
        (None, None) => None,
        (Some(from), Some(to)) => Some((from, to)),
        (from, to) => {
            panic!("set both WS_E2E_MIGRATE_FROM and WS_E2E_MIGRATE_TO (got {from:?} and {to:?})")
        }
    }
}

fn server_version(ws: &Container) -> String {
    ws.exec_ok(
        Some("workspace"),
        &["docker", "version", "--format", "{{.Server.Version}}"],
        secs(60),
    )
}

#[test]
fn docker_volume_of_the_older_image_keeps_its_images_on_the_newer() {
    let Some((from, to)) = images() else {
        eprintln!(
            "migration test not run: WS_E2E_MIGRATE_FROM and WS_E2E_MIGRATE_TO are not set \
             (.ci/run sets them to its bookworm and trixie images)"
        );
        return;
    };
    let Some(e) = e2e() else { return };
    for image in [&from, &to] {
        let out = docker(&["image", "inspect", image], secs(30));
        assert!(
            out.ok(),
            "image {image} (WS_E2E_MIGRATE_FROM/TO) does not exist: build it with \
             WS_BASE_SUITE=... image/build.sh {image}\n{}",
            out.describe()
        );
    }
    let vol = Volume::create(&unique("migratevol"));
    let mount = format!("{}:/var/lib/docker", vol.name);
    let mut args: Vec<&str> = e.privileged.iter().map(String::as_str).collect();
    args.extend_from_slice(&["-e", "WS_DOCKER_ENABLE_CLIENT=1", "-v", &mount]);

    // The older Docker writes the volume: an imported image, one built on it, and a named
    // volume with data.
    let old = Container::start(&unique("migrate-old"), &args, &from, &[]);
    old.wait_docker(90);
    let old_version = server_version(&old);
    old.import_busybox("bb");
    old.sh_ok(
        "set -e; d=$(mktemp -d); printf 'FROM bb\\nRUN echo layer-from-old > /marker\\n' > $d/Dockerfile; \
         docker build -q -t wse2e-migrated:old $d >/dev/null; rm -rf $d; \
         docker volume create wse2e-data >/dev/null; \
         docker run --rm -v wse2e-data:/data bb sh -c 'echo data-from-old > /data/f'",
        secs(300),
    );
    let old_ids = old.sh_ok(
        "docker image inspect --format '{{.Id}}' bb wse2e-migrated:old",
        secs(30),
    );
    docker_ok(&["stop", &old.name], secs(60));
    drop(old);

    // The newer Docker on the same volume.
    let new = Container::start(&unique("migrate-new"), &args, &to, &[]);
    new.wait_docker(90);
    let new_version = server_version(&new);
    new.check(
        new_version != old_version,
        &format!(
            "both images run Docker {new_version}: {from} and {to} must be different Docker \
             versions for this test to mean anything"
        ),
    );
    let new_ids = new.sh_ok(
        "docker image inspect --format '{{.Id}}' bb wse2e-migrated:old",
        secs(30),
    );
    new.check(
        new_ids == old_ids,
        &format!(
            "after the move from Docker {old_version} to {new_version} the images are \
             {new_ids:?}, before {old_ids:?}"
        ),
    );
    let marker = new.sh_ok("docker run --rm wse2e-migrated:old cat /marker", secs(120));
    new.check(
        marker == "layer-from-old",
        &format!("the image built by Docker {old_version} gives {marker:?} on {new_version}"),
    );
    let data = new.sh_ok(
        "docker run --rm -v wse2e-data:/data bb cat /data/f",
        secs(120),
    );
    new.check(
        data == "data-from-old",
        &format!("the named volume written by Docker {old_version} reads {data:?}"),
    );
    // The newer daemon can still build on the migrated images.
    new.sh_ok(
        "set -e; d=$(mktemp -d); printf 'FROM wse2e-migrated:old\\nRUN cat /marker > /copy\\n' > $d/Dockerfile; \
         docker build -q -t wse2e-migrated:new $d >/dev/null; rm -rf $d; \
         test \"$(docker run --rm wse2e-migrated:new cat /copy)\" = layer-from-old",
        secs(300),
    );
    drop(new);
    drop(vol);
}
