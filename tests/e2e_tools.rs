//! End-to-end tests of the Docker tools a workspace user runs, as user `workspace` inside the
//! workspace image: `docker compose` (v2 plugin) and `docker-compose` with a project that
//! builds its own image, and `docker build` through buildx/BuildKit `FROM` an image that
//! exists only in the inner daemon, with a second build served from the cache.
//!
//! These need an image with compose v2 and buildx (trixie or newer); .ci/run also runs them
//! on the sid image (test names carry `compose_v2` and `buildkit` for its filters).

#[allow(dead_code)]
#[path = "e2e/support.rs"]
mod support;

use support::*;

/// Writes `content` to `path` inside the workspace, as `workspace` (parents created).
fn write_file(ws: &Container, path: &str, content: &str) {
    let script = format!("mkdir -p \"$(dirname {path})\" && cat > {path}");
    let out = ws.exec_input(
        Some("workspace"),
        &["sh", "-c", &script],
        Some(content.as_bytes()),
        secs(30),
    );
    ws.check(
        out.ok(),
        &format!("cannot write {path}:\n{}", out.describe()),
    );
}

/// A project whose `web` service is built from a Dockerfile `FROM bb` (an image imported into
/// the inner daemon, in no registry) and reached by service name from `client`.
const COMPOSE_PROJECT: &str = r#"services:
  web:
    build: ./web
    image: wse2e-web:local
  client:
    image: bb
    command: ["sleep", "3600"]
"#;

const WEB_DOCKERFILE: &str = r#"FROM bb
RUN mkdir -p /www && echo compose-v2-ok > /www/index.html
CMD ["httpd", "-f", "-p", "80", "-h", "/www"]
"#;

/// `docker compose up -d / ps / down` (v2) as `workspace` with a locally built image, and the
/// hyphenated `docker-compose` on the same project.
#[test]
fn compose_v2_up_ps_down_with_a_locally_built_image() {
    let Some(e) = e2e() else { return };
    let ws = Container::workspace(e, &unique("composev2"), &[]);
    ws.wait_docker(90);

    let version = ws.sh_ok("docker compose version --short", secs(60));
    ws.check(
        version.trim_start_matches('v').starts_with('2'),
        &format!("`docker compose version --short` is {version:?}, want 2.x"),
    );
    // The hyphenated command the workspace docs use is the same v2 binary.
    let hyphen = ws.sh_ok("docker-compose version --short", secs(60));
    ws.check(
        hyphen == version,
        &format!("docker-compose reports {hyphen:?}, docker compose {version:?}"),
    );

    ws.import_busybox("bb");
    write_file(&ws, "~/v2proj/compose.yaml", COMPOSE_PROJECT);
    write_file(&ws, "~/v2proj/web/Dockerfile", WEB_DOCKERFILE);

    ws.sh_ok("cd ~/v2proj && docker compose up -d", secs(300));
    let running = ws.sh_ok(
        "cd ~/v2proj && docker compose ps --services --status running | sort",
        secs(60),
    );
    ws.check(
        running == "client\nweb",
        &format!("`docker compose ps` lists running services {running:?}, want client and web"),
    );
    let page = wait_for(secs(60), || {
        let out = ws.exec(
            Some("workspace"),
            &[
                "sh",
                "-c",
                "cd ~/v2proj && docker compose exec -T client wget -q -O - http://web/",
            ],
            secs(60),
        );
        out.ok().then(|| out.stdout.trim().to_string())
    });
    ws.check(
        page.as_deref() == Some("compose-v2-ok"),
        &format!("client got {page:?} from http://web/"),
    );
    let hyphen_ps = ws.sh_ok(
        "cd ~/v2proj && docker-compose ps --services --status running | sort",
        secs(60),
    );
    ws.check(
        hyphen_ps == running,
        &format!("`docker-compose ps` lists {hyphen_ps:?}, `docker compose ps` {running:?}"),
    );

    ws.sh_ok("cd ~/v2proj && docker compose down", secs(120));
    let left = ws.sh_ok(
        "docker ps -aq --filter label=com.docker.compose.project=v2proj; \
         docker network ls -q --filter label=com.docker.compose.project=v2proj",
        secs(60),
    );
    ws.check(
        left.is_empty(),
        &format!("`docker compose down` left containers or networks: {left:?}"),
    );
    // The built image stays, as compose leaves it.
    ws.sh_ok("docker image inspect wse2e-web:local >/dev/null", secs(30));
}

const BUILD_DOCKERFILE: &str = r#"FROM bb
RUN echo built-by-buildkit > /built.txt
COPY hello.txt /hello.txt
CMD ["cat", "/built.txt", "/hello.txt"]
"#;

/// `docker build` goes through buildx/BuildKit, `FROM` an image that exists only in the inner
/// daemon (no registry is reachable), and a second build of the same context is cached.
#[test]
fn buildkit_build_from_a_local_only_image_hits_the_cache() {
    let Some(e) = e2e() else { return };
    let ws = Container::workspace(e, &unique("buildkit"), &[]);
    ws.wait_docker(90);

    let buildx = ws.sh_ok("docker buildx version", secs(60));
    ws.check(
        buildx.contains("buildx"),
        &format!("`docker buildx version` printed {buildx:?}"),
    );
    ws.import_busybox("bb");
    write_file(&ws, "~/app/Dockerfile", BUILD_DOCKERFILE);
    write_file(&ws, "~/app/hello.txt", "hello-from-context\n");

    // BuildKit's plain progress numbers its steps (`#1 [internal] load build definition`);
    // the legacy builder prints `Step 1/4` instead.
    let first = ws.sh_ok(
        "cd ~/app && docker build --progress=plain -t wse2e-app:1 . 2>&1",
        secs(300),
    );
    ws.check(
        first.contains("[internal] load build definition") && !first.contains("Step 1/"),
        &format!(
            "the first build did not go through BuildKit:\n{}",
            tail(&first, 40)
        ),
    );
    let ran = ws.sh_ok("docker run --rm wse2e-app:1", secs(120));
    ws.check(
        ran == "built-by-buildkit\nhello-from-context",
        &format!("the built image printed {ran:?}"),
    );

    let second = ws.sh_ok(
        "cd ~/app && docker build --progress=plain -t wse2e-app:2 . 2>&1",
        secs(300),
    );
    // Both the RUN and the COPY step come from the cache (`#6 CACHED`).
    let cached = second
        .lines()
        .filter(|l| l.trim_end().ends_with(" CACHED"))
        .count();
    ws.check(
        cached >= 2,
        &format!("the second build did not hit the cache ({cached} CACHED steps):\n{second}"),
    );
    // A step that ran again would have made a new layer (new file times), so a new image.
    let ids = ws.sh_ok(
        "docker image inspect --format '{{.Id}}' wse2e-app:1 wse2e-app:2 | sort -u | wc -l",
        secs(30),
    );
    ws.check(
        ids == "1",
        &format!("the cached build made a different image ({ids} distinct ids)"),
    );
}
