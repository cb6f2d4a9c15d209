#!/usr/bin/env bash
# The project's test command: installs what the tests need when it is missing (as root, with
# tests/lib/setup.sh, which also starts an outer dockerd when none answers), builds the
# workspace image once, then runs the unit and integration tests and the end-to-end tests
# (tests/e2e*.rs) against that image.
#
#   bash tests/run.sh [LIBTEST-FILTER...]
#
# Filters, when given, select end-to-end tests by name as libtest does (a test runs when its
# name contains one of them); the unit and integration tests then do not run.
#
# Environment:
#   WS_E2E_IMAGE    image tag to build and test (default ws-init/workspace:test)
#   WS_E2E_THREADS  end-to-end scenarios run at once (default 4; they mostly wait)
#   WS_E2E_SKIP=1   skip the end-to-end tests (machines without Docker)
#   WS_E2E_PREBUILT=1  test WS_E2E_IMAGE as it is, without building it (.ci/run's other
#                   suites: WS_BASE_SUITE=sid image/build.sh TAG, then this)
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=tests/lib/setup.sh
source tests/lib/setup.sh
export WS_E2E_IMAGE=${WS_E2E_IMAGE:-ws-init/workspace:test}
THREADS=${WS_E2E_THREADS:-4}

FAILED=()
SUMMARY=()

# phase NAME CMD...: run CMD, print its duration, remember a failure and carry on.
phase() {
  local name=$1 start rc=0 took
  shift
  printf '\n[run.sh] == %s\n' "$name" >&2
  start=$(date +%s.%N)
  # A subshell with its own errexit: the caller's `|| rc=$?` must not disable -e inside.
  bash -c 'set -euo pipefail; "$@"' "$name" "$@" || rc=$?
  took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  printf '[run.sh] == %s: %s s (exit %d)\n' "$name" "$took" "$rc" >&2
  SUMMARY+=("$(printf '%-28s %8s s  %s' "$name" "$took" "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED ($rc)")")")
  [[ $rc -eq 0 ]] || FAILED+=("$name")
  return 0
}

# Every test target; the end-to-end ones (e2e*) run in their own phase against the image.
TARGETS=(--lib --bins)
E2E_TARGETS=()
for f in tests/*.rs; do
  [[ -e $f ]] || continue
  name=$(basename "$f" .rs)
  if [[ $name = e2e* ]]; then
    E2E_TARGETS+=(--test "$name")
  else
    TARGETS+=(--test "$name")
  fi
done

FILTERS=("$@")

# Packages (and, for the end-to-end tests, the outer engine): stop here when they are missing.
if [[ ${WS_E2E_SKIP:-} = 1 ]]; then
  ws_setup --no-engine build test
else
  ws_setup build test
fi

if [[ ${WS_E2E_SKIP:-} = 1 ]]; then
  echo "[run.sh] WS_E2E_SKIP=1: not building the image, end-to-end tests skipped" >&2
elif [[ ${WS_E2E_PREBUILT:-} = 1 ]]; then
  docker image inspect "$WS_E2E_IMAGE" >/dev/null \
    || { echo "[run.sh] WS_E2E_PREBUILT=1 but ${WS_E2E_IMAGE} does not exist" >&2; exit 1; }
  echo "[run.sh] WS_E2E_PREBUILT=1: testing ${WS_E2E_IMAGE} as it is" >&2
else
  phase "image ${WS_E2E_IMAGE}" bash image/build.sh "$WS_E2E_IMAGE"
fi
if ((${#FILTERS[@]} == 0)); then
  # Debug builds: the release profile's LTO would link every test binary slowly; the
  # release binary itself is what the image (and so the e2e tests) runs.
  phase "unit + integration tests" cargo test --locked --no-fail-fast "${TARGETS[@]}"
  # The resident core's own crate: its unit tests (poll loop parts, the
  # supervisor's machine and driver, the handover, the DNS forwarder, the log copy).
  phase "core unit tests" cargo test --locked --no-fail-fast -p ws-init-core
  phase "doc tests" cargo test --locked --doc --workspace
fi
if [[ ${WS_E2E_SKIP:-} != 1 ]]; then
  if [[ " ${FAILED[*]} " == *" image ${WS_E2E_IMAGE} "* ]]; then
    echo "[run.sh] the image did not build: end-to-end tests not run" >&2
    FAILED+=("e2e tests")
  else
    phase "e2e tests${FILTERS[*]:+ (${FILTERS[*]})}" cargo test --locked --no-fail-fast "${E2E_TARGETS[@]}" -- \
      --test-threads "$THREADS" "${FILTERS[@]}"
  fi
fi

printf '\n[run.sh] summary\n' >&2
printf '  %s\n' "${SUMMARY[@]}" >&2
if ((${#FAILED[@]})); then
  printf '[run.sh] FAILED: %s\n' "${FAILED[*]}" >&2
  exit 1
fi
echo "[run.sh] all phases passed" >&2
