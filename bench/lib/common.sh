#!/usr/bin/env bash
# Shared by bench/*.sh (sourced). Expects: IMAGE, RESULTS, WORK, RUNS set by run-all.sh
# (each script also sets defaults so it runs alone).
# shellcheck disable=SC2034  # variables used by the sourcing scripts

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
LIB=$BENCH/lib
PY=(python3 "$LIB/benchlib.py")
IMAGE=${IMAGE:-ws-init/workspace:bench}
RUNS=${RUNS:-5}
QUICK=${QUICK:-0}
RESULTS=${RESULTS:-$BENCH/results.tsv}
if [[ -z ${WORK:-} ]]; then
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/ws-init-bench.XXXXXX")
  OWN_WORK=1
fi
EXAMPLES=${EXAMPLES:-$ROOT/target/x86_64-unknown-linux-musl/release/examples}

# What `--privileged` gives, minus what this host refuses (see BRIEF/DEVELOPERS facts).
PRIV=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined
  --security-opt apparmor=unconfined --security-opt systempaths=unconfined)
SOCK_URL=unix:///var/run/docker.sock

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# record BENCH VARIANT METRIC VALUE
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }

# Containers and volumes this script made, removed however it ends.
CONTAINERS=()
VOLUMES=()
bench_cleanup() {
  local c v
  for c in "${CONTAINERS[@]}"; do docker rm -f -v "$c" >/dev/null 2>&1 || :; done
  for v in "${VOLUMES[@]}"; do docker volume rm -f "$v" >/dev/null 2>&1 || :; done
  if [[ ${OWN_WORK:-0} = 1 ]]; then rm -rf "$WORK"; fi
}
trap bench_cleanup EXIT

# kv TEXT KEY: the value of KEY=... in a line of key=value pairs.
kv() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }

# remove_container ID: stop it at once and drop its anonymous volumes.
remove_container() {
  docker rm -f -v "$1" >/dev/null 2>&1 || :
  local keep=() c
  for c in "${CONTAINERS[@]}"; do [[ $c = "$1" ]] || keep+=("$c"); done
  CONTAINERS=("${keep[@]}")
}

# start_ready RUNDIR DOCKER_RUN_ARGS...: `docker run -d` with RUNDIR mounted at /run (the
# inner socket is RUNDIR/docker.sock) and time it until /_ping answers. Sets CID and READY;
# returns 1 (after showing the container's last log lines) when it never answers.
start_ready() {
  local rundir=$1 out idf
  shift
  idf=$WORK/cid.$$
  rm -f "$idf"
  CID=""
  READY=""
  if ! out=$("${PY[@]}" ready --socket "$rundir/docker.sock" --timeout 90 --id-out "$idf" -- \
    docker run -d -v /var/lib/docker -v "$rundir:/run" "$@"); then
    CID=$(tr -d '\n' <"$idf" 2>/dev/null || :)
    if [[ -n $CID ]]; then
      log "no /_ping from $CID; state: $(docker inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$CID" 2>&1)"
      docker logs "$CID" 2>&1 | tail -n 8 >&2 || :
      remove_container "$CID"
    fi
    return 1
  fi
  CID=$(tr -d '\n' <"$idf")
  CONTAINERS+=("$CID")
  READY=$(kv "$out" ready_s)
}

# pid1_mem CID: prints "RSS PSS" (kB) of the container's PID 1, read from the host.
pid1_mem() {
  local pid out
  pid=$(docker inspect -f '{{.State.Pid}}' "$1")
  out=$("${PY[@]}" mem "$pid")
  printf '%s %s\n' "$(kv "$out" rss_kb)" "$(kv "$out" pss_kb)"
}

# fresh_dir NAME: an empty directory under WORK.
fresh_dir() {
  local d
  d=$(mktemp -d "$WORK/$1.XXXXXX")
  printf '%s\n' "$d"
}

# make_tiny_image CID: a ~3 MB image `bench/tiny:1` (dash, sleep and libc from the workspace
# image) imported into the inner dockerd of CID; no registry needed.
make_tiny_image() {
  docker exec "$1" sh -euc '
    r=$(mktemp -d)
    mkdir -p "$r/bin" "$r/lib/x86_64-linux-gnu" "$r/lib64" "$r/m" "$r/tmp"
    cp -L /bin/dash "$r/bin/sh"
    cp -L /bin/sleep "$r/bin/sleep"
    cp -L /lib/x86_64-linux-gnu/libc.so.6 "$r/lib/x86_64-linux-gnu/"
    cp -L /lib64/ld-linux-x86-64.so.2 "$r/lib64/"
    tar -C "$r" -c . | docker import -c "CMD [\"/bin/sleep\", \"infinity\"]" - bench/tiny:1 >/dev/null
    rm -rf "$r"'
}

# now: seconds since the epoch with nanoseconds; since T0: seconds elapsed, 4 decimals.
now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.4f", e - s }'; }

# wait_file PATH SECONDS: until PATH exists; 1 when it does not in time.
wait_file() {
  local i
  for ((i = 0; i < $2 * 50; i++)); do
    [[ -e $1 ]] && return 0
    sleep 0.02
  done
  return 1
}

# The physical limit when inner containers must run: in the near-privileged container the
# cgroup v1 hierarchies are read-only and runc cannot create cgroups, so bare dockerd gets
# the same remount ws-init does, in a minimal shell, then is exec'd (stays PID 1).
LIMIT_RW=(--entrypoint sh "$IMAGE" -c
  "for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw \"\$d\" 2>/dev/null || :; done; exec dockerd --host=$SOCK_URL")
