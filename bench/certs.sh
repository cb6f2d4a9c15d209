#!/usr/bin/env bash
# 2. Certificate generation alone: ws-init's `ensure_certificates` (examples/gen_certs.rs)
# against openssl RSA-4096 the way upstream does it (bench/peers/tls-openssl.sh), with fresh
# keys and with kept keys (certificates re-issued), interleaved, on the host.
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

UP_RUNS=${UP_RUNS:-3}
GEN=$EXAMPLES/gen_certs
[[ -x $GEN ]] || die "$GEN missing: cargo build --release --target x86_64-unknown-linux-musl --example gen_certs"
command -v openssl >/dev/null || die "openssl missing: apt-get install openssl"

ours=$(fresh_dir certs-ws)
theirs=$(fresh_dir certs-openssl)

openssl_once() {
  local t0
  t0=$(now)
  sh "$BENCH/peers/tls-openssl.sh" "$theirs" >/dev/null
  awk -v s="$(since "$t0")" 'BEGIN { printf "%.1f", s * 1000 }'
}

for ((i = 1; i <= RUNS; i++)); do
  rm -rf "$ours"
  ms=$("$GEN" --dir "$ours" --runs 1 | sed -n 's/^ms=//p')
  record certs ws-init-fresh ms "$ms"
  # Second call on the same directory: keys kept, certificates re-issued.
  ms=$("$GEN" --dir "$ours" --runs 2 --keep-keys | sed -n '2s/^ms=//p')
  record certs ws-init-kept ms "$ms"
  if ((i <= UP_RUNS)); then
    rm -rf "$theirs"
    ms=$(openssl_once)
    record certs openssl-fresh ms "$ms"
    ms=$(openssl_once)
    record certs openssl-kept ms "$ms"
  fi
  log "round $i/$RUNS done"
done
rm -rf "$ours" "$theirs"
