#!/usr/bin/env bash
# Resident memory of PID 1 in the workspace image, side by side in one run:
# ws-init with the image's defaults plus the inner daemon (WS_DOCKER_ENABLE_CLIENT=1,
# TLS off) once dockerd answers, and tini-static (shipped in the image) as PID 1
# of the same image. Both run on a user-defined network, whose resolver
# (127.0.0.11) makes ws-init run its inner DNS forwarder; the forwarder answers
# a few queries before the figures are read. Prints VmRSS, RssAnon and RssFile
# of each, the resident memory of every other ws-init process (none is left
# once bring-up has handed over), and ws-init's resident mappings.
#
#   bench/footprint_image.sh [IMAGE]    default IMAGE: ws-init/workspace:dev
#
# Uses the near-privileged flags of the end-to-end tests (tests/e2e/support.rs).
set -euo pipefail

image=${1:-ws-init/workspace:dev}
flags=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined
    --security-opt apparmor=unconfined --security-opt systempaths=unconfined)
ws=ws-init-footprint-ws-$$
tini=ws-init-footprint-tini-$$
net=ws-init-footprint-net-$$
trap 'docker rm -f "$ws" "$tini" >/dev/null 2>&1 || true; docker network rm "$net" >/dev/null 2>&1 || true' EXIT

die() {
    echo "footprint_image: $*" >&2
    exit 1
}

docker image inspect "$image" >/dev/null 2>&1 || die "no image $image; build it with image/build.sh $image"
docker network create "$net" >/dev/null
docker run -d --name "$ws" --network "$net" "${flags[@]}" -e WS_DOCKER_ENABLE_CLIENT=1 "$image" sleep infinity >/dev/null
docker run -d --name "$tini" --network "$net" "${flags[@]}" --entrypoint /usr/bin/tini-static "$image" \
    -- sleep infinity >/dev/null

ready=
for ((i = 0; i < 60; i++)); do
    if docker exec -u workspace "$ws" docker version >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 1
done
[[ -n $ready ]] || die "dockerd did not answer within 60 s; docker logs $ws shows why"
# The forwarder's address, from ws-init's log line; a few A queries for
# `localhost` through it (bash's /dev/udp: the image has no DNS tool).
fwd=$(docker logs "$ws" 2>&1 | sed -n 's/.*inner DNS: forwarding \([0-9.]*\):53 .*/\1/p' | head -n1)
if [[ -n $fwd ]]; then
    docker exec "$ws" bash -c 'for i in $(seq 1 20); do
        printf "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x09localhost\x00\x00\x01\x00\x01" >/dev/udp/'"$fwd"'/53
    done'
    echo "inner DNS forwarder: on ($fwd:53), 20 queries sent"
else
    echo "inner DNS forwarder: off (ws-init did not plan it on this network)"
fi
# Let the readiness check, the queries and the first log lines settle.
sleep 2

status() {
    docker exec "$1" awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%s %s ", $1, $2 } END { print "" }' \
        /proc/1/status
}
echo "ws-init (supervising dockerd): $(status "$ws")"
echo "tini-static:                   $(status "$tini")"
others=$(docker exec "$ws" sh -c 'for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = 1 ] && continue
    case "$(readlink "$p/exe" 2>/dev/null)" in */ws-init|*/ws-init-bringup) echo "${p#/proc/} $(grep VmRSS "$p/status")";; esac
done')
echo "other ws-init processes:        ${others:-none}"
echo
echo "ws-init mappings with resident pages (Rss kB, mapping):"
docker exec "$ws" awk '/^[0-9a-f]+-[0-9a-f]+ / { m = $0 } /^Rss:/ && $2 > 0 { print $2, m }' \
    /proc/1/smaps
