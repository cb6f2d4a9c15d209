#!/usr/bin/env bash
# The arm64 checks: under qemu-user on an amd64 host, natively on an arm64 one; each phase
# prints its time, the script its total. For a .ci/run phase after tests/run.sh (here: warm
# about 25 s, cold about 15 min, most of it the arm64 debootstrap).
#
#   bash tests/multiarch/run.sh
#
# Phases:
#   [image]   WS_PLATFORMS=linux/arm64 image/build.sh: binfmt handler, static aarch64 ws-init
#             (cargo zigbuild), arm64 base (cached: ws-init/debian-base:SUITE-arm64 and
#             ~/.cache/ws-init/debian-base-SUITE-arm64.tar), the image (layers cached)
#   [pid1]    tests/pid1.rs against the aarch64 binary (WS_INIT_TEST_BIN); the checks that
#             cannot hold under emulation say so as "[emulation gap] NAME: REASON" and check
#             what holds there instead; they are listed at the end
#   [smoke]   the arm64 image on the outer engine: the inner dockerd answers `docker info` as
#             workspace, and an inner arm64 container runs. Under qemu-user two gaps are named
#             as "[emulation gap]" when seen: iptables (no netfilter: dockerd then runs with
#             --iptables=false) and the inner container (containerd's shim cannot become a
#             subreaper); natively (an arm64 host) neither is accepted
#
# Environment:
#   WS_MULTIARCH_IMAGE   tag of the arm64 image (default ws-init/workspace:multiarch-arm64)
#   WS_SMOKE_TIMEOUT     seconds for the inner dockerd to answer (default 300: emulated Go)
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
IMAGE=${WS_MULTIARCH_IMAGE:-ws-init/workspace:multiarch-arm64}
SMOKE_TIMEOUT=${WS_SMOKE_TIMEOUT:-300}
TDIR=${CARGO_TARGET_DIR:-target}
[[ $TDIR = /* ]] || TDIR=$ROOT/$TDIR
BIN=$TDIR/aarch64-unknown-linux-musl/release/ws-init
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/ws-multiarch.XXXXXX")
NAME=ws-multiarch-smoke-$$
START=$(date +%s.%N)

log() { printf '[multiarch] %s\n' "$*" >&2; }
since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

cleanup() {
  docker rm -f -v "$NAME" >/dev/null 2>&1 || true
  rm -rf "$LOGS"
}
trap cleanup EXIT

FAILED=()
SUMMARY=()
# phase NAME FUNCTION: run it with its own errexit, print its time, remember a failure.
phase() {
  local name=$1 start rc=0 took
  shift
  log "== ${name}"
  start=$(date +%s.%N)
  # Not in an ||/&& context, where bash would ignore -e inside the subshell.
  set +e
  (
    set -e
    "$@"
  )
  rc=$?
  set -e
  took=$(since "$start")
  log "== ${name}: ${took} s (exit ${rc})"
  SUMMARY+=("$(printf '%-8s %8s s  %s' "$name" "$took" "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED ($rc)")")")
  ((rc == 0)) || FAILED+=("$name")
  return 0
}

build_image() {
  [[ $(uname -m) == x86_64 ]] || log "host is $(uname -m): arm64 runs natively here"
  WS_PLATFORMS=linux/arm64 bash image/build.sh "$IMAGE"
}

pid1_tests() {
  [[ -x $BIN && -x ${BIN%/*}/ws-init-bringup ]] \
    || { log "no aarch64 ws-init and ws-init-bringup in ${BIN%/*} (the image phase builds them)"; return 1; }
  local rc=0
  WS_INIT_TEST_BIN=$BIN cargo test --locked --test pid1 -- --nocapture >"$LOGS/pid1.log" 2>&1 || rc=$?
  grep -E '^test result|FAILED|panicked' "$LOGS/pid1.log" >&2 || true
  ((rc == 0)) || { tail -n 80 "$LOGS/pid1.log" >&2; return "$rc"; }
  grep -F '[emulation gap]' "$LOGS/pid1.log" | sort -u >"$LOGS/gaps" || true
  # Runs natively on an arm64 host: no gap is expected there.
  log "checks that cannot hold under qemu-user ($(wc -l <"$LOGS/gaps")):"
  sed 's/^/[multiarch]   /' "$LOGS/gaps" >&2
}

# dx ARGS...: docker exec into the smoke container (as root), bounded; wx: the same as workspace.
dx() { timeout 300 docker exec "$NAME" "$@"; }
wx() { timeout 300 docker exec -u workspace "$NAME" "$@"; }

NEAR_PRIVILEGED=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined
  --security-opt apparmor=unconfined --security-opt systempaths=unconfined)

# gap NAME REASON: a check that cannot hold under qemu-user, said by name.
gap() { log "[emulation gap] $1: $2"; }

smoke() {
  local i ok="" out dockerd_args=""
  [[ $(docker image inspect --format '{{.Architecture}}' "$IMAGE") == arm64 ]] \
    || { log "${IMAGE} is not an arm64 image"; return 1; }
  # Emulated arm64 iptables reaches no netfilter: qemu-user translates neither nf_tables
  # netlink ("Failed to initialize nft: Protocol not supported") nor iptables-legacy's socket
  # options ("can't initialize iptables table"). dockerd then needs --iptables=false.
  if ! out=$(docker run --rm "${NEAR_PRIVILEGED[@]}" --platform linux/arm64 --entrypoint iptables \
    "$IMAGE" -nL 2>&1 >/dev/null); then
    [[ $(uname -m) != aarch64 ]] || { log "iptables fails natively on arm64: ${out}"; return 1; }
    gap "inner dockerd with iptables" "qemu-user translates neither nf_tables netlink nor iptables-legacy's socket options (${out##*$'\n'}); dockerd runs with --iptables=false"
    dockerd_args=--iptables=false
  fi
  docker run -d --name "$NAME" --platform linux/arm64 "${NEAR_PRIVILEGED[@]}" \
    -e WS_DOCKER_ENABLE_CLIENT=1 ${dockerd_args:+-e WS_DOCKERD_ARGS="$dockerd_args"} "$IMAGE" >/dev/null
  log "arch in the container: $(dx uname -m)"
  for ((i = 0; i < SMOKE_TIMEOUT; i += 2)); do
    # docker info exits 0 when only the client answers: the server's version must be there.
    if out=$(wx docker info --format '{{.ServerVersion}} {{.Architecture}}' 2>&1) && [[ $out =~ ^[0-9] ]]; then
      ok=1
      break
    fi
    [[ $(docker inspect --format '{{.State.Running}}' "$NAME") == true ]] || break
    sleep 2
  done
  if [[ -z $ok ]]; then
    log "the inner dockerd did not answer workspace within ${SMOKE_TIMEOUT} s: ${out}"
    docker logs --tail 60 "$NAME" >&2 || true
    return 1
  fi
  log "inner dockerd answers workspace after ~${i} s: ${out}"
  # An inner image of the image's own static arm64 programs, in their installed layout
  # (bin/ws-init, libexec/ws-init/ws-init-bringup): no registry needed.
  dx sh -c 'tar -C /usr/local -c bin/ws-init libexec/ws-init/ws-init-bringup | docker import - ws-init-smoke:arm64 >/dev/null' \
    || { log "cannot import the inner image"; return 1; }
  if out=$(wx docker run --rm ws-init-smoke:arm64 /bin/ws-init --version 2>&1) \
    && [[ $out == "ws-init "* ]]; then
    log "inner arm64 container ran: ${out}"
  elif [[ $(uname -m) != aarch64 && $out == *"failed to start shim"*"invalid argument"* ]]; then
    # containerd-shim-runc-v2 makes itself a child subreaper at its start and gives up on the
    # EINVAL: the same prctl gap as in tests/pid1.rs. A native arm64 run (the workflow's
    # test-arm64 job) runs the inner container.
    gap "inner arm64 container" "containerd-shim-runc-v2 cannot become a child subreaper: qemu-user answers prctl(PR_SET_CHILD_SUBREAPER) with EINVAL (${out})"
  else
    log "inner container failed: ${out}"
    docker logs --tail 40 "$NAME" >&2 || true
    return 1
  fi
}

phase image build_image
phase pid1 pid1_tests
if [[ " ${FAILED[*]} " == *" image "* ]]; then
  log "the image did not build: smoke run skipped"
  FAILED+=(smoke)
else
  phase smoke smoke
fi

printf '\n[multiarch] summary\n' >&2
printf '[multiarch]   %s\n' "${SUMMARY[@]}" >&2
log "total: $(since "$START") s"
if ((${#FAILED[@]})); then
  log "FAILED: ${FAILED[*]}"
  exit 1
fi
log "all phases passed"
