#!/usr/bin/env bash
# Run every benchmark and write bench/results.md (and the raw samples, bench/results.tsv).
# Every number that matters is a ratio against a peer measured in the same run: absolute
# times on a shared machine are noise.
#
#   bench/run-all.sh [--quick] [--no-build] [--image TAG] [--only LIST]
#
#   --quick     fewer runs (about 5 minutes instead of about 15)
#   --no-build  use the existing IMAGE and target/ binaries (default: build both first)
#   --image TAG workspace image (default ws-init/workspace:bench)
#   --only LIST comma-separated subset of: startup,certs,shutdown,reap,scaling
#
# Needs root, the outer Docker engine, python3, openssl, curl-free; tini, dumb-init and
# catatonit (Debian packages) for the reaping peers.
set -euo pipefail
shopt -s inherit_errexit

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
MUSL=x86_64-unknown-linux-musl

QUICK=0
BUILD=1
IMAGE=ws-init/workspace:bench
ONLY=startup,certs,shutdown,reap,scaling
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --image) IMAGE=${2:?--image needs a tag}; shift ;;
    --only) ONLY=${2:?--only needs a list}; shift ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "run-all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '[run-all] %s\n' "$*" >&2; }
[[ $(id -u) -eq 0 ]] || { log "needs root (docker, unshare --pid)"; exit 1; }
docker info >/dev/null 2>&1 || { log "the Docker engine does not answer (docker info)"; exit 1; }

if ((QUICK)); then
  export RUNS=2 UP_RUNS=1 SHUT_RUNS=1 REAP_RUNS=1 SCALE_COUNTS="0 20"
else
  export RUNS=5 UP_RUNS=3 SHUT_RUNS=3 REAP_RUNS=3 SCALE_COUNTS="0 20 100"
fi
export IMAGE QUICK
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ws-init-bench.XXXXXX")
export WORK
export RESULTS=$WORK/results.tsv
trap 'rm -rf "$WORK"' EXIT
: >"$RESULTS"

phase() {
  local name=$1 t0
  shift
  log "== $name"
  t0=$(date +%s)
  "$@"
  log "== $name: $(($(date +%s) - t0)) s"
}

START=$(date +%s)
if ((BUILD)); then
  phase "image $IMAGE" bash "$ROOT/image/build.sh" "$IMAGE"
  phase "example binaries" cargo build --quiet --release --locked --target "$MUSL" \
    --manifest-path "$ROOT/Cargo.toml" --example gen_certs --example orphans
fi
docker image inspect "$IMAGE" >/dev/null 2>&1 || { log "no image $IMAGE (drop --no-build)"; exit 1; }

# Context for the reader of the results.
printf 'meta\tload1\tvalue\t%s\n' "$(cut -d' ' -f1 /proc/loadavg)" >>"$RESULTS"
printf 'meta\tcpus\tvalue\t%s\n' "$(nproc)" >>"$RESULTS"
# Binary sizes as shipped in the image.
read -r ws_size tini_size < <(docker run --rm --entrypoint stat "$IMAGE" -c %s \
  /usr/local/bin/ws-init /usr/bin/tini-static | paste -sd' ')
printf 'footprint\tws-init\tsize\t%s\nfootprint\ttini\tsize\t%s\n' "$ws_size" "$tini_size" >>"$RESULTS"

IFS=, read -r -a WANT <<<"$ONLY"
for b in "${WANT[@]}"; do
  case $b in
    startup | certs | shutdown | reap | scaling) phase "$b" bash "$BENCH/$b.sh" ;;
    *) log "unknown benchmark $b"; exit 2 ;;
  esac
done

cp "$RESULTS" "$BENCH/results.tsv"
mode=full
((QUICK)) && mode=quick
python3 "$BENCH/lib/benchlib.py" report "$RESULTS" "$BENCH/results.md" \
  --title "ws-init benchmarks ($mode run, $(date -u +%Y-%m-%d), $(($(date +%s) - START)) s)"
log "written: bench/results.md, bench/results.tsv"
