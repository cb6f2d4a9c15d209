#!/usr/bin/env bash
# 3. Shutdown: `docker stop` (default 10 s timeout) of a workspace whose inner dockerd runs a
# container that traps SIGTERM and writes a marker into a directory bind-mounted from the
# host; time until the workspace has exited, and whether the marker appeared. Peer: the same
# image with `dockerd` as entrypoint.
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

SHUT_RUNS=${SHUT_RUNS:-3}
TRAPPER='trap "echo TERM >/m/term; exit 0" TERM; echo up >/m/up; while :; do sleep 1 & wait $!; done'

run_once() {
  local v=$1 dir marks args t0 took code term
  case $v in
    limit) args=("${LIMIT_RW[@]}") ;;
    ws-init) args=(-e WS_DOCKER_ENABLE_CLIENT=1 "$IMAGE") ;;
  esac
  dir=$(fresh_dir "stop-$v")
  marks=$(fresh_dir "marks-$v")
  if ! start_ready "$dir" "${PRIV[@]}" -v "$marks:/marks" "${args[@]}"; then
    record shutdown "$v" fail 1
    return 0
  fi
  make_tiny_image "$CID"
  docker exec "$CID" docker run -d --name trapper -v /marks:/m bench/tiny:1 /bin/sh -c "$TRAPPER" >/dev/null
  wait_file "$marks/up" 30 || die "$v: the inner container did not start"
  t0=$(now)
  docker stop "$CID" >/dev/null
  took=$(since "$t0")
  code=$(docker inspect -f '{{.State.ExitCode}}' "$CID")
  term=0
  [[ -e $marks/term ]] && term=1
  record shutdown "$v" stop "$took"
  record shutdown "$v" term "$term"
  record shutdown "$v" exit "$code"
  log "$v: stopped in $took s, exit $code, inner SIGTERM: $term"
  remove_container "$CID"
  rm -rf "$dir" "$marks"
}

for ((i = 1; i <= SHUT_RUNS; i++)); do
  run_once limit
  run_once ws-init
done
