#!/usr/bin/env bash
# Footprint of ws-init next to tini-static, measured the same way in the same
# run: the static binaries' sizes, and the resident memory (VmRSS) of each as
# PID 1 of a fresh PID namespace supervising `sleep 1000`, median of SAMPLES
# runs. Needs root (unshare --pid). Usage: bench/footprint.sh [SAMPLES]
set -euo pipefail

samples=${1:-7}
target=x86_64-unknown-linux-musl
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
crate=$(dirname "$here")
target_dir=${CARGO_TARGET_DIR:-$crate/target}
ws_init=$target_dir/$target/release/ws-init
tini=/usr/bin/tini-static

die() {
    echo "footprint: $*" >&2
    exit 1
}

[[ $samples =~ ^[1-9][0-9]*$ ]] || die "SAMPLES must be a positive whole number, got '$samples'"
[[ $(id -u) -eq 0 ]] || die "needs root for unshare --pid --mount-proc; run it with sudo"
command -v unshare >/dev/null || die "unshare (util-linux) is missing"

echo "== building the static release binary ($target)"
cargo build --quiet --release --target "$target" --manifest-path "$crate/Cargo.toml"
kind=$(file -b "$ws_init")
case $kind in
*"statically linked"* | *"static-pie linked"*) ;;
*) die "$ws_init is not a static binary: $kind" ;;
esac

if [[ ! -x $tini ]]; then
    echo "== installing tini (for $tini)"
    apt-get install -y -qq tini >/dev/null
fi

# Host PID of a child of $1 (named $2, if given), once it exists (bounded: 5 s).
child_of() {
    local parent=$1 name=${2:-} i pid
    for ((i = 0; i < 500; i++)); do
        pid=$(pgrep -P "$parent" ${name:+-x "$name"} | head -n1 || true)
        if [[ -n $pid ]]; then
            echo "$pid"
            return 0
        fi
        sleep 0.01
    done
    return 1
}

# VmRSS in kB of one init ("$@") as PID 1 supervising sleep 1000.
rss_of() {
    local unshare_pid init_pid rss i
    env -u WS_USER -u WS_DOCKER_ENABLE_CLIENT WS_STOP_TIMEOUT=2 \
        unshare --pid --fork --mount-proc "$@" sleep 1000 >/dev/null 2>&1 &
    unshare_pid=$!
    init_pid=$(child_of "$unshare_pid") || die "no init process under unshare ($*)"
    # Ready once the init has started sleep (it may still be unshare itself
    # before the exec, which has no child; ws-init's first child is its
    # short-lived bring-up program).
    child_of "$init_pid" sleep >/dev/null || die "$* never started its command"
    sleep 0.3
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$init_pid/status")
    kill -TERM "$init_pid"
    for ((i = 0; i < 500; i++)); do
        kill -0 "$unshare_pid" 2>/dev/null || break
        sleep 0.01
    done
    if kill -0 "$unshare_pid" 2>/dev/null; then
        kill -KILL "$init_pid" 2>/dev/null || true
        echo "footprint: warning: $* did not stop within 5 s of SIGTERM" >&2
    fi
    wait "$unshare_pid" 2>/dev/null || true
    echo "$rss"
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ws_samples=()
tini_samples=()
echo "== measuring VmRSS as PID 1 supervising 'sleep 1000', $samples samples each (interleaved)"
for ((n = 0; n < samples; n++)); do
    ws_samples+=("$(rss_of "$ws_init")")
    tini_samples+=("$(rss_of "$tini")")
done

ws_rss=$(printf '%s\n' "${ws_samples[@]}" | median)
tini_rss=$(printf '%s\n' "${tini_samples[@]}" | median)
ws_size=$(stat -c %s "$ws_init")
tini_size=$(stat -c %s "$tini")

echo
echo "ws-init:     $kind"
echo "tini-static: $(file -b "$tini")"
echo "samples (kB) ws-init: ${ws_samples[*]}"
echo "samples (kB) tini:    ${tini_samples[*]}"
echo
printf '%-12s %14s %10s %18s\n' binary "size (bytes)" "size (KiB)" "VmRSS median (kB)"
printf '%-12s %14d %10.0f %18s\n' ws-init "$ws_size" "$(awk -v s="$ws_size" 'BEGIN { print s / 1024 }')" "$ws_rss"
printf '%-12s %14d %10.0f %18s\n' tini-static "$tini_size" "$(awk -v s="$tini_size" 'BEGIN { print s / 1024 }')" "$tini_rss"
awk -v a="$ws_size" -v b="$tini_size" -v c="$ws_rss" -v d="$tini_rss" \
    'BEGIN { printf "ratio ws-init / tini-static: size %.1fx, VmRSS %.1fx\n", a / b, c / d }'
