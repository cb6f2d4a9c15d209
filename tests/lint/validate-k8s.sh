#!/usr/bin/env bash
# Validates every Kubernetes manifest under deploy/kubernetes strictly (unknown fields are
# errors) against the schemas of each Kubernetes version in WS_K8S_VERSIONS, offline, with
# kubernetes-validate from a venv (tests/lint/venv.sh). Exits non-zero when any manifest fails.
#
#   bash tests/lint/validate-k8s.sh [FILE...]
#
# Environment:
#   WS_K8S_VERSIONS  space-separated versions (default "1.30.0 1.37.0": the oldest we claim
#                    to support and the newest the pinned kubernetes-validate knows)
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=tests/lint/venv.sh
source tests/lint/venv.sh

read -r -a VERSIONS <<<"${WS_K8S_VERSIONS:-1.30.0 1.37.0}"

if (($# > 0)); then
  FILES=("$@")
else
  mapfile -t FILES < <(find deploy/kubernetes -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
fi
if ((${#FILES[@]} == 0)); then
  echo "validate-k8s: no manifests found under deploy/kubernetes" >&2
  exit 1
fi

BIN=$(lint_venv)
rc=0
for v in "${VERSIONS[@]}"; do
  echo "validate-k8s: Kubernetes $v, ${#FILES[@]} file(s)" >&2
  "$BIN/kubernetes-validate" --strict --quiet -k "$v" "${FILES[@]}" || rc=1
done
if ((rc != 0)); then
  echo "validate-k8s: FAILED (see the errors above)" >&2
else
  echo "validate-k8s: all manifests valid" >&2
fi
exit "$rc"
