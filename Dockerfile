# Workspace image whose PID 1 is ws-init, for linux/amd64 and linux/arm64. Build with
# image/build.sh (it builds the static ws-init and ws-init-bringup first and sends a tiny
# context: this file, .dockerignore, bin/ARCH/ws-init, bin/ARCH/ws-init-bringup).
#   docker run -d --privileged -e WS_DOCKER_ENABLE_CLIENT=1 ws-init/workspace:dev
ARG BASE_IMAGE=debian:trixie-slim
FROM ${BASE_IMAGE}
# Extra apt options for this suite (image/build.sh sets them, e.g. for sid's expired Release).
ARG APT_OPTS=""
# The apt sources of a base image/build.sh made with debootstrap (that suite, -updates and
# -security where Debian has them, on the build host's mirror); empty: the base's own.
ARG APT_SOURCES=""

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# apparmor brings apparmor_parser: on hosts whose kernel has AppArmor on, dockerd 20.10 must load
# its docker-default profile or every inner `docker run` fails (moby#44900).
# The docker group gets GID 999 (design §4) before docker.io's postinst would create it with
# whatever system GID is free. policy-rc.d keeps maintainer scripts from starting services
# during the build (there is no init here; ws-init starts dockerd at run time).
# From trixie on the CLI and the buildx plugin are packages of their own (installed when the
# suite has them); docker-compose is the v2 CLI plugin from trixie on, v1 on bookworm.
# rootlesskit, slirp4netns, uidmap (newuidmap/newgidmap) and iproute2 (rootlesskit runs `ip`)
# run the inner dockerd as the workspace user when WS_DOCKER_ROOTLESS=1.
# hadolint ignore=DL3008
RUN set -eux; \
    if getent group 999 >/dev/null; then echo "GID 999 is taken: $(getent group 999)" >&2; exit 1; fi; \
    groupadd --system --gid 999 docker; \
    useradd --create-home --home-dir /home/workspace --shell /bin/bash \
        --uid 1000 --user-group --groups docker workspace; \
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; \
    chmod 0755 /usr/sbin/policy-rc.d; \
    if [ -n "$APT_SOURCES" ]; then \
        printf '%s\n' "$APT_SOURCES" >/etc/apt/sources.list; \
        rm -f /etc/apt/sources.list.d/debian.sources; \
    fi; \
    read -ra apt_opts <<<"$APT_OPTS"; \
    apt-get "${apt_opts[@]}" update; \
    pkgs=(apparmor bash ca-certificates docker-compose docker.io iptables less procps \
        iproute2 rootlesskit slirp4netns uidmap); \
    for p in docker-cli docker-buildx; do \
        if apt-cache show "$p" >/dev/null 2>&1; then pkgs+=("$p"); fi; \
    done; \
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y --no-install-recommends "${pkgs[@]}"; \
    rm -f /usr/sbin/policy-rc.d; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt/* /var/log/dpkg.log; \
    test "$(getent group docker | cut -d: -f3)" = 999; \
    id workspace

# `docker build` uses BuildKit by default inside the workspace.
ENV DOCKER_BUILDKIT=1

# Inner images and containers: overlay2 cannot sit on the container's own overlayfs, so this
# path is a volume (an anonymous one unless the user mounts a named volume or an emptyDir).
VOLUME /var/lib/docker

# The context holds the two static programs per architecture (image/build.sh): ws-init, the
# resident PID 1, and ws-init-bringup, the bring-up it runs (it looks for it in
# ../libexec/ws-init/ from its own directory). BuildKit sets TARGETARCH, build.sh passes it to
# the legacy builder.
ARG TARGETARCH
COPY bin/${TARGETARCH}/ws-init /usr/local/bin/ws-init
COPY bin/${TARGETARCH}/ws-init-bringup /usr/local/libexec/ws-init/ws-init-bringup

WORKDIR /home/workspace

# Healthy once the Docker API answers; also healthy at once when Docker is disabled
# (wait-docker exits 0 then).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/ws-init", "wait-docker", "--timeout", "1"]

ENTRYPOINT ["/usr/local/bin/ws-init"]
# `docker run -d IMAGE` keeps a workspace up for `docker exec` and editor servers; an
# interactive shell is one argument away (`docker run -it IMAGE bash`). bash as default would
# exit at once under -d without a terminal.
CMD ["sleep", "infinity"]
