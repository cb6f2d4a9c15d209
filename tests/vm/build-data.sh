#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build (cached by image ID) the VM's /var/lib/docker disk with the workspace image
# already loaded, so the VM does not spend minutes in `docker load` under TCG.
#
# How: a second, private dockerd on this machine (its own data root on a
# loop-mounted ext4 image, own exec root and socket, no networking) runs
# `docker load` at native speed. The VM's dockerd is the same Debian docker.io
# release, so it reads that overlay2 data root as its own. The outer engine's
# storage and network are never touched: the image is streamed with `docker
# save`, and the private daemon runs in its own network namespace.
#
# Usage: build-data.sh IMAGE    Prints the disk path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

image="${1:?usage: build-data.sh IMAGE}"
wsvm_need docker dockerd unshare mkfs.ext4 mount umount sha256sum
image_id="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null)" ||
    wsvm_die "image $image not found in the local engine: build it first (image/build.sh)"
id_short="${image_id#sha256:}"
id_short="${id_short:0:16}"
key="${id_short}-$(wsvm_hash_files "$here/build-data.sh")"
out="$WSVM_CACHE/data-$key.raw"
if [[ -s "$out" ]]; then
    wsvm_log "docker data disk cached for $image ($image_id): $out"
    echo "$out"
    exit 0
fi

mkdir -p "$WSVM_CACHE"
work="$(mktemp -d "$WSVM_CACHE/data-build.XXXXXX")"
# Short exec root: containerd's socket path must stay under the unix socket limit.
exec_root="$(mktemp -d /run/wsvm-dockerd.XXXXXX)"
mnt="$work/mnt"
mkdir -p "$mnt"
dockerd_pid=""

cleanup() {
    if [[ -n "$dockerd_pid" ]] && kill -0 "$dockerd_pid" 2>/dev/null; then
        kill -TERM "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
    fi
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || umount -l "$mnt" || true; fi
    rm -rf "$work" "$exec_root"
}
trap cleanup EXIT

# Room for the image plus the workspace's /var/lib/docker volume (inner images).
truncate -s 8G "$work/data.raw"
mkfs.ext4 -q -F -L wsvm-docker "$work/data.raw"
mount -o loop "$work/data.raw" "$mnt"

echo '{}' >"$work/daemon.json"
sock="$exec_root/docker.sock"
# Own network and mount namespaces: with --bridge none dockerd deletes any
# interface named docker0 it can see, which would be the outer engine's bridge.
unshare --net --mount --propagation private -- \
    dockerd --config-file "$work/daemon.json" \
    --data-root "$mnt" --exec-root "$exec_root" --pidfile "$exec_root/docker.pid" \
    --host "unix://$sock" --storage-driver overlay2 \
    --bridge none --iptables=false --ip-forward=false --ip-masq=false \
    >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!

for _ in $(seq 1 60); do
    if docker -H "unix://$sock" version >/dev/null 2>&1; then break; fi
    kill -0 "$dockerd_pid" 2>/dev/null ||
        { tail -n 20 "$work/dockerd.log" >&2; wsvm_die "the private dockerd exited"; }
    sleep 0.5
done
docker -H "unix://$sock" version >/dev/null 2>&1 ||
    { tail -n 20 "$work/dockerd.log" >&2; wsvm_die "the private dockerd did not answer in 30 s"; }

wsvm_log "loading $image ($image_id) into the VM's docker data root"
docker save "$image" | docker -H "unix://$sock" load >&2
loaded_id="$(docker -H "unix://$sock" image inspect --format '{{.Id}}' "$image")"
[[ "$loaded_id" == "$image_id" ]] ||
    wsvm_die "loaded image ID $loaded_id differs from the engine's $image_id"

kill -TERM "$dockerd_pid"
wait "$dockerd_pid" || true
dockerd_pid=""
# Network state of a bridge-less daemon: let the VM's dockerd create its own.
rm -rf "$mnt/network"
umount "$mnt"

# Only the newest data disk is kept: older ones belong to older image builds.
find "$WSVM_CACHE" -maxdepth 1 -name 'data-*.raw' ! -name "data-$key.raw" -delete
mv "$work/data.raw" "$out"
wsvm_log "docker data disk built: $out"
echo "$out"
