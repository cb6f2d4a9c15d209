#!/usr/bin/env bash
# Resident memory of PID 1 in the workspace image, side by side in one run:
# ws-init with the image's defaults plus the inner daemon (WS_DOCKER_ENABLE_CLIENT=1,
# TLS off) once dockerd answers, and tini-static (shipped in the image) as PID 1
# of the same image. Prints VmRSS, RssAnon and RssFile of each, and ws-init's
# resident mappings (binary segments, heap, stack).
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
trap 'docker rm -f "$ws" "$tini" >/dev/null 2>&1 || true' EXIT

die() {
    echo "footprint_image: $*" >&2
    exit 1
}

docker image inspect "$image" >/dev/null 2>&1 || die "no image $image; build it with image/build.sh $image"
docker run -d --name "$ws" "${flags[@]}" -e WS_DOCKER_ENABLE_CLIENT=1 "$image" sleep infinity >/dev/null
docker run -d --name "$tini" "${flags[@]}" --entrypoint /usr/bin/tini-static "$image" \
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
# Let the readiness check and the first log lines settle.
sleep 2

status() {
    docker exec "$1" awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%s %s ", $1, $2 } END { print "" }' \
        /proc/1/status
}
echo "ws-init (supervising dockerd): $(status "$ws")"
echo "tini-static:                   $(status "$tini")"
echo
echo "ws-init mappings with resident pages (Rss kB, mapping):"
docker exec "$ws" awk '/^[0-9a-f]+-[0-9a-f]+ / { m = $0 } /^Rss:/ && $2 > 0 { print $2, m }' \
    /proc/1/smaps
