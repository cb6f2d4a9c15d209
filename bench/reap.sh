#!/usr/bin/env bash
# 5. Reaping: 10,000 orphaned zombies in one burst (examples/orphans.rs) under each init as
# PID 1 of a fresh PID namespace: ws-init, tini, dumb-init, catatonit; interleaved.
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

REAP_RUNS=${REAP_RUNS:-3}
COUNT=${REAP_COUNT:-10000}
ORPHANS=$EXAMPLES/orphans
WS_INIT=${WS_INIT_BIN:-$ROOT/target/x86_64-unknown-linux-musl/release/ws-init}
[[ -x $ORPHANS ]] || die "$ORPHANS missing: cargo build --release --target x86_64-unknown-linux-musl --example orphans"
[[ -x $WS_INIT ]] || die "$WS_INIT missing: cargo build --release --target x86_64-unknown-linux-musl"
for tool in tini dumb-init catatonit; do
  command -v "$tool" >/dev/null || die "$tool missing: apt-get install $tool"
done

init_cmd() {
  case $1 in
    ws-init) printf '%s\n' "$WS_INIT" -- ;;
    tini) printf '%s\n' tini -- ;;
    dumb-init) printf '%s\n' dumb-init ;;
    catatonit) printf '%s\n' catatonit -- ;;
  esac
}

for ((i = 1; i <= REAP_RUNS; i++)); do
  for init in ws-init tini dumb-init catatonit; do
    mapfile -t cmd < <(init_cmd "$init")
    t0=$(now)
    # ws-init: no Docker work, main command as root (no workspace user on the host).
    out=$(env -u WS_DOCKER_ENABLE_CLIENT -u WS_USER \
      unshare --pid --fork --mount-proc "${cmd[@]}" "$ORPHANS" --count "$COUNT" 2>"$WORK/reap.err") || {
      cat "$WORK/reap.err" >&2
      die "$init: orphans failed"
    }
    total=$(since "$t0")
    reap=$(kv "$out" reap_ms)
    record reap "$init" reap "$reap"
    record reap "$init" spawn "$(kv "$out" spawn_ms)"
    record reap "$init" total "$total"
    log "$init: reaped $COUNT in $reap ms (run $total s)"
  done
done
