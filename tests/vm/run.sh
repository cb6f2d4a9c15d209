#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end test of ws-init on a cgroup v2 host with real --privileged: boots a
# TCG VM (Debian bookworm, Debian's kernel, cgroup v2 only, Debian's docker.io),
# runs the workspace image inside it and checks the results the guest reports.
#
# Usage: tests/vm/run.sh [IMAGE]     (default ws-init/workspace:dev, or $WSVM_IMAGE)
# Exit 0 only if every assertion passed. Needs root (loop mounts, a private
# dockerd), qemu-system-x86_64, debootstrap, e2fsprogs and the local Docker engine
# (tests/lib/setup.sh installs and starts what is missing).
# Caches under ${XDG_CACHE_HOME:-$HOME/.cache}/ws-init/vm (root disk and kernel:
# built once, ~4-5 min; docker data disk with the image loaded: per image ID, ~30 s).
# Environment: WSVM_TIMEOUT (QEMU wall limit, s, default 1800), WSVM_GUEST_TIMEOUT
# (guest watchdog, s, default 1500), WSVM_MEM (default 3G), WSVM_SMP (default 2),
# WSVM_KEEP=1 keeps the run directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
# shellcheck source=../lib/setup.sh
source "$here/../lib/setup.sh"

image="${1:-${WSVM_IMAGE:-ws-init/workspace:dev}}"
timeout_s="${WSVM_TIMEOUT:-1800}"
guest_timeout="${WSVM_GUEST_TIMEOUT:-1500}"
[[ $(id -u) == 0 ]] || wsvm_die "run as root: the disks are built with loop mounts and a private dockerd"
# qemu, e2fsprogs, debootstrap, busybox-static and the engine: installed/started when missing.
ws_setup vm
wsvm_need qemu-system-x86_64 mkfs.ext4 timeout docker

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/wsvm-run.XXXXXX")"
export WSVM_TIMINGS="$run_dir/timings"
: >"$WSVM_TIMINGS"
cleanup() {
    if [[ "${WSVM_KEEP:-0}" == 1 ]]; then
        wsvm_log "run directory kept: $run_dir"
    else
        rm -rf "$run_dir"
    fi
}
trap cleanup EXIT
t_start=$SECONDS

wsvm_phase root_disk
root_dir="$("$here/build-root.sh")"
wsvm_phase_end

wsvm_phase data_disk
data_disk="$("$here/build-data.sh" "$image")"
image_id="$(docker image inspect --format '{{.Id}}' "$image")"
wsvm_phase_end

# The payload disk is rebuilt every run (tiny): guest scripts, busybox, config.
wsvm_phase payload_disk
busybox="${WSVM_BUSYBOX:-/bin/busybox}"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
    wsvm_die "$busybox is not a static busybox: apt-get install busybox-static"
stage="$run_dir/payload"
mkdir -p "$stage"
install -m 0755 "$here/guest/guest.sh" "$stage/guest.sh"
install -m 0755 "$busybox" "$stage/busybox"
printf 'IMAGE=%q\nIMAGE_ID=%q\nGUEST_TIMEOUT=%q\n' "$image" "$image_id" "$guest_timeout" >"$stage/config.sh"
truncate -s 64M "$run_dir/payload.raw"
mkfs.ext4 -q -F -L wsvm-payload -d "$stage" "$run_dir/payload.raw"
wsvm_phase_end

wsvm_phase vm
results="$run_dir/results.log"
: >"$results"
vm_rc=0
# vda root, vdb /var/lib/docker (both copy-on-write: the caches stay pristine),
# vdc payload. Console on the first serial port (stdout), results on the second.
timeout --kill-after=15 "$timeout_s" qemu-system-x86_64 \
    -accel tcg -m "${WSVM_MEM:-3G}" -smp "${WSVM_SMP:-2}" -no-reboot \
    -display none -monitor none -nic none \
    -kernel "$root_dir/vmlinuz" -initrd "$root_dir/initrd.img" \
    -append "root=/dev/vda rw rootflags=noinit_itable init=/sbin/ws-vm-init systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all console=ttyS0 panic=1 loglevel=4" \
    -drive "file=$root_dir/root.raw,format=raw,if=virtio,snapshot=on" \
    -drive "file=$data_disk,format=raw,if=virtio,snapshot=on" \
    -drive "file=$run_dir/payload.raw,format=raw,if=virtio,readonly=on" \
    -serial stdio -serial "file:$results" </dev/null | tee "$run_dir/console.log" || vm_rc=$?
wsvm_phase_end

echo
echo "=== results ($image, $image_id)"
grep -a '^WSVM-' "$results" | tr -d '\r' || true
echo "=== timings (host phases, seconds)"
cat "$WSVM_TIMINGS"
echo "total $((SECONDS - t_start))"

fail=0
[[ $vm_rc == 0 ]] || { wsvm_log "QEMU exited with $vm_rc (124: host timeout ${timeout_s}s)"; fail=1; }
grep -aq '^WSVM-DONE' "$results" || { wsvm_log "the guest did not finish (no WSVM-DONE)"; fail=1; }
n_ok="$(grep -ac '^WSVM-RESULT .* ok=1 ' "$results" || true)"
n_bad="$(grep -ac '^WSVM-RESULT .* ok=0 ' "$results" || true)"
# Every expected assertion must have reported, not just "no failures".
expected=(vm_cgroup_fs outer_dockerd outer_image_id)
for mode in private host; do
    for a in racing_exec inner_docker_ready docker_info_cgroup_version inner_image_import \
        inner_run inner_memory_max inner_cpu_max root_cgroup_procs_empty \
        root_cgroup_subtree_control pid1_cgroup vm_dockerd_cgroup_untouched doctor_cgroup_v2 doctor_mode_inner doctor_ok; do
        expected+=("$mode.$a")
    done
done
expected+=(private.inside_root_cgroup_procs_empty private.inside_subtree_control)
for a in inner_docker_ready docker_info_rootless dockerd_user inner_run shadow_refused; do
    expected+=("rootless.$a")
done
for name in "${expected[@]}"; do
    grep -aq "^WSVM-RESULT name=$name ok=1 " "$results" || { wsvm_log "missing or failed: $name"; fail=1; }
done
wsvm_log "$n_ok passed, $n_bad failed, ${#expected[@]} expected"
if [[ $fail != 0 ]]; then
    cp "$run_dir/console.log" "$WSVM_CACHE/last-console.log" 2>/dev/null || true
    cp "$results" "$WSVM_CACHE/last-results.log" 2>/dev/null || true
    wsvm_log "FAILED (console and results copied to $WSVM_CACHE/last-*.log)"
    exit 1
fi
wsvm_log "PASSED"
