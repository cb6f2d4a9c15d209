#!/usr/bin/env bash
# 6. Restart with N inner containers (`--restart always`, tiny image, default bridge):
# `docker stop -t 60` then `docker start` of the workspace (what `docker restart` does, split
# so the stop and the start are timed apart); from `docker start` until /_ping answers and
# until all N run again; PID 1's RSS then. Peer: `dockerd` as entrypoint, same steps.
# The inner containers run `sleep infinity`, which ignores SIGTERM (a common case), so each
# stop waits for dockerd's container stop timeout. The stop timeout is long (docker stop -t 60,
# WS_STOP_TIMEOUT=55) so neither variant is killed mid-shutdown: an unclean stop leaves
# /var/run/docker.pid behind (bare dockerd then refuses to start) and makes the next start
# clean up dead shims and endpoints, which is not what this measures.
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

read -r -a COUNTS <<<"${SCALE_COUNTS:-0 20 100}"

run_variant() {
  local v=$1 dir args have=0 n t0 stop out rss
  case $v in
    limit) args=("${LIMIT_RW[@]}") ;;
    # ws-init's own shutdown budget (default 8 s) matched to `docker stop -t 60`.
    ws-init) args=(-e WS_DOCKER_ENABLE_CLIENT=1 -e WS_STOP_TIMEOUT=55 "$IMAGE") ;;
  esac
  dir=$(fresh_dir "scale-$v")
  if ! start_ready "$dir" "${PRIV[@]}" "${args[@]}"; then
    record scaling "$v-n0" fail 1
    return 0
  fi
  make_tiny_image "$CID"
  for n in "${COUNTS[@]}"; do
    if ((n > have)); then
      t0=$(now)
      docker exec "$CID" sh -euc '
        for i in $(seq "$1" "$2"); do
          docker run -d --restart always --name "c$i" bench/tiny:1 >/dev/null
        done' sh "$((have + 1))" "$n"
      log "$v: created $((n - have)) containers in $(since "$t0") s"
      have=$n
    fi
    t0=$(now)
    docker stop -t 60 "$CID" >/dev/null
    stop=$(since "$t0")
    if ! out=$("${PY[@]}" ready --socket "$dir/docker.sock" --timeout 180 --running "$n" -- \
      docker start "$CID"); then
      log "$v: N=$n did not come back: $(docker inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$CID")"
      docker logs "$CID" 2>&1 | tail -n 5 >&2 || :
      record scaling "$v-n$n" fail 1
      break
    fi
    record scaling "$v-n$n" stop "$stop"
    record scaling "$v-n$n" ready "$(kv "$out" ready_s)"
    record scaling "$v-n$n" running "$(kv "$out" running_s)"
    read -r rss _ < <(pid1_mem "$CID")
    record scaling "$v-n$n" rss "$rss"
    log "$v: N=$n stop $stop s, back: $out, PID 1 RSS $rss kB"
  done
  remove_container "$CID"
  rm -rf "$dir"
}

run_variant limit
run_variant ws-init
