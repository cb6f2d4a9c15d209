#!/usr/bin/env bash
# 1. Startup to ready, and 4. PID 1 memory while supervising dockerd.
# `docker run -d` until the inner dockerd answers /_ping on its unix socket (its directory,
# /run, is a fresh host directory each run; /var/lib/docker a fresh anonymous volume).
# Variants run round-robin so a load change on the machine hits all of them alike.
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

UP_RUNS=${UP_RUNS:-3}
PEERS=(-v "$BENCH/peers:/bench-peers:ro")
UPSTREAM=(--entrypoint /bench-peers/dockerd-entrypoint.sh)
WS=(-e WS_DOCKER_ENABLE_CLIENT=1)

# Kept-key volumes: certificates made once before the measured runs.
KEPT_WS=ws-init-bench-certs-ws-$$
KEPT_UP=ws-init-bench-certs-up-$$
VOLUMES+=("$KEPT_WS" "$KEPT_UP")

variant_args() {
  case $1 in
    limit) printf '%s\n' --entrypoint dockerd "$IMAGE" "--host=$SOCK_URL" ;;
    tini) printf '%s\n' --entrypoint /usr/bin/tini-static "$IMAGE" -- dockerd "--host=$SOCK_URL" ;;
    ws-init) printf '%s\n' "${WS[@]}" "$IMAGE" ;;
    ws-init-tls-fresh) printf '%s\n' "${WS[@]}" -e DOCKER_TLS_CERTDIR=/certs -v /certs "$IMAGE" ;;
    ws-init-tls-kept) printf '%s\n' "${WS[@]}" -e DOCKER_TLS_CERTDIR=/certs -v "$KEPT_WS:/certs" "$IMAGE" ;;
    upstream-tls-fresh) printf '%s\n' "${PEERS[@]}" "${UPSTREAM[@]}" -e DOCKER_TLS_CERTDIR=/certs -v /certs "$IMAGE" ;;
    upstream-tls-kept) printf '%s\n' "${PEERS[@]}" "${UPSTREAM[@]}" -e DOCKER_TLS_CERTDIR=/certs -v "$KEPT_UP:/certs" "$IMAGE" ;;
    upstream-tcp) printf '%s\n' "${PEERS[@]}" "${UPSTREAM[@]}" "$IMAGE" ;;
    *) die "unknown variant $1" ;;
  esac
}

run_variant() {
  local v=$1 dir args rss pss ms
  mapfile -t args < <(variant_args "$v")
  dir=$(fresh_dir "run-$v")
  if ! start_ready "$dir" "${PRIV[@]}" "${args[@]}"; then
    log "$v: FAILED to become ready"
    record startup "$v" fail 1
    rm -rf "$dir"
    return 0
  fi
  record startup "$v" ready "$READY"
  case $v in
    ws-init | tini)
      # Let start-up transients settle before reading PID 1's memory.
      sleep 1
      read -r rss pss < <(pid1_mem "$CID")
      record footprint "$v" rss "$rss"
      [[ $pss = NA ]] || record footprint "$v" pss "$pss"
      ;;
    ws-init-tls-fresh)
      ms=$(docker logs "$CID" 2>&1 | sed -n 's/.*elapsed_ms=\([0-9]*\).*TLS certificates ready.*/\1/p' | head -n 1)
      [[ -z $ms ]] || record certs ws-init-in-container ms "$ms"
      ;;
  esac
  log "$v: ready in ${READY} s"
  remove_container "$CID"
  rm -rf "$dir"
}

# Prime the kept-key volumes (not measured).
docker volume create "$KEPT_WS" >/dev/null
docker volume create "$KEPT_UP" >/dev/null
log "priming kept-key certificate volumes"
docker run --rm "${PEERS[@]}" -v "$KEPT_UP:/certs" --entrypoint sh "$IMAGE" \
  /bench-peers/tls-openssl.sh /certs >/dev/null 2>&1 || log "warning: priming $KEPT_UP failed"
dir=$(fresh_dir prime)
if start_ready "$dir" "${PRIV[@]}" "${WS[@]}" -e DOCKER_TLS_CERTDIR=/certs -v "$KEPT_WS:/certs" "$IMAGE"; then
  remove_container "$CID"
else
  log "warning: priming $KEPT_WS failed"
fi
rm -rf "$dir"

OURS=(limit tini ws-init ws-init-tls-fresh ws-init-tls-kept)
THEIRS=(upstream-tls-fresh upstream-tls-kept upstream-tcp)
for ((i = 1; i <= RUNS; i++)); do
  log "round $i/$RUNS"
  for v in "${OURS[@]}"; do run_variant "$v"; done
  if ((i <= UP_RUNS)); then
    for v in "${THEIRS[@]}"; do run_variant "$v"; done
  fi
done
