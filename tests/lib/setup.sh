# shellcheck shell=bash
# The one setup path of the project's scripts (sourced, never run): image/build.sh,
# tests/run.sh, tests/vm/run.sh and .ci/run call `ws_setup NEED...` first.
#
#   ws_setup [--no-engine] NEED...     NEED: build test lint vm (package groups below)
#
# As root on Debian it installs the packages of those groups that are missing (one apt-get
# run; maintainer scripts start no services meanwhile) and, unless --no-engine, starts an
# outer dockerd when none answers: `systemctl start docker` on a systemd machine, else
# `nohup dockerd` with its log in /var/log/ws-init-outer-dockerd.log, waiting at most
# WS_SETUP_DOCKER_WAIT seconds (default 60). Not root: it installs and starts nothing and
# names what is missing. Either way it ends with one line saying what it did.

# Package groups. build: what image/build.sh needs (the engine and CLI, debootstrap for a
# local base image, musl-gcc for the static build, `file` for its check). test: the tests
# (busybox-static for inner images, docker-compose for tests/e2e_compose.rs, openssl for the
# TLS checks, the other inits the PID-1 tests compare against, unshare and pgrep).
# lint: tests/lint/run.sh. vm: tests/vm/run.sh (the cgroup v2 VM). multiarch: foreign
# architectures in image/build.sh (qemu-user binfmt handlers, the cargo-zigbuild venv).
# A name ending in `?` is installed only where the archive has it: from trixie on, docker.io
# no longer brings the `docker` CLI, which is docker-cli there. `@CMD:PKG,PKG` installs the
# packages only when the command CMD is missing (npm may come from elsewhere than dpkg).
declare -gA WS_SETUP_GROUPS=(
  [build]="ca-certificates docker.io docker-cli? debootstrap musl-tools file"
  [test]="ca-certificates docker.io docker-cli? docker-compose busybox-static openssl procps iptables util-linux tini dumb-init catatonit @npm:nodejs,npm"
  [lint]="shellcheck python3-venv docker-compose"
  [vm]="qemu-system-x86 e2fsprogs debootstrap busybox-static file docker.io docker-cli?"
  [multiarch]="qemu-user-static binfmt-support python3-venv debootstrap"
)
WS_SETUP_DOCKERD_LOG=/var/log/ws-init-outer-dockerd.log

_ws_setup_log() { printf '[setup] %s\n' "$*" >&2; }

# Packages of the groups NEED... that dpkg does not list as installed, one per line.
ws_setup_missing_packages() {
  local group pkg
  local -A seen=()
  for group in "$@"; do
    [[ -n ${WS_SETUP_GROUPS[$group]+x} ]] || { _ws_setup_log "unknown package group: ${group}"; return 2; }
    for pkg in ${WS_SETUP_GROUPS[$group]}; do
      [[ -z ${seen[$pkg]+x} ]] || continue
      seen[$pkg]=1
      if [[ $pkg = @* ]]; then
        # @CMD:PKG,PKG: those packages when CMD is missing (the Dev Containers CLI needs npm).
        local cmd=${pkg%%:*}
        command -v "${cmd#@}" >/dev/null 2>&1 || tr ',' '\n' <<<"${pkg#*:}"
        continue
      fi
      if [[ $pkg = *\? ]]; then
        pkg=${pkg%\?}
        apt-cache show "$pkg" >/dev/null 2>&1 || continue
      fi
      dpkg-query -W -f '${Status}\n' "$pkg" 2>/dev/null | grep -q 'install ok installed' || echo "$pkg"
    done
  done
}

# Installs the missing packages of the groups NEED... with apt-get (after an update, which
# also shows which optional packages the archive has); no service starts during the install
# (policy-rc.d): the engine is started by ws_setup_engine, in one known way. Prints them.
_ws_setup_apt_install() {
  local guard="" rc=0
  local -a pkgs
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
  mapfile -t pkgs < <(ws_setup_missing_packages "$@")
  echo "${pkgs[*]}"
  ((${#pkgs[@]})) || return 0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2 \
    || rc=$?
  [[ -z $guard ]] || rm -f "$guard"
  return "$rc"
}

# Starts an outer dockerd when none answers. Prints what it did (one phrase) on stdout.
ws_setup_engine() {
  local wait=${WS_SETUP_DOCKER_WAIT:-60} i how
  if docker info >/dev/null 2>&1; then
    echo "the Docker engine answers"
    return 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    _ws_setup_log "the Docker engine does not answer and we are not root: start it (systemctl start docker, or as root: nohup dockerd >/var/log/dockerd.log 2>&1 &), or run this as root"
    return 1
  fi
  command -v dockerd >/dev/null 2>&1 || { _ws_setup_log "no dockerd on this machine: apt-get install docker.io"; return 1; }
  command -v docker >/dev/null 2>&1 || { _ws_setup_log "no docker CLI on this machine: apt-get install docker-cli (docker.io before trixie)"; return 1; }
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1 \
    && systemctl start docker >&2; then
    how="started docker.service (systemctl)"
  else
    # No systemd (a container, a CI runner): dockerd in the background, detached from this
    # script's terminal and process group, so it outlives the script.
    nohup setsid dockerd >"$WS_SETUP_DOCKERD_LOG" 2>&1 </dev/null &
    how="started dockerd with nohup (log ${WS_SETUP_DOCKERD_LOG})"
  fi
  for ((i = 0; i < wait; i++)); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    [[ ! -f $WS_SETUP_DOCKERD_LOG ]] || tail -n 30 "$WS_SETUP_DOCKERD_LOG" >&2
    _ws_setup_log "${how}, but it did not answer within ${wait} s (WS_SETUP_DOCKER_WAIT)"
    return 1
  fi
  echo "${how}, answering after ${i} s"
}

ws_setup() {
  local engine=1 missing done_pkgs
  local -a pkgs
  if [[ ${1:-} = --no-engine ]]; then
    engine=0
    shift
  fi
  local group
  for group in "$@"; do
    [[ -n ${WS_SETUP_GROUPS[$group]+x} ]] || { _ws_setup_log "unknown package group: ${group}"; return 2; }
  done
  if ! command -v dpkg-query >/dev/null 2>&1; then
    done_pkgs="not a Debian system: packages not checked (needed: $(printf '%s ' "${@/#/group }"))"
  else
    mapfile -t pkgs < <(ws_setup_missing_packages "$@")
    missing="${pkgs[*]}"
    if [[ -z $missing ]]; then
      done_pkgs="packages present"
    elif [[ $(id -u) -ne 0 ]]; then
      _ws_setup_log "missing packages (not root, not installing): ${missing}; install them with: sudo apt-get install ${missing}"
      done_pkgs="missing ${missing}"
    else
      _ws_setup_log "installing: ${missing}"
      missing=$(_ws_setup_apt_install "$@") || { _ws_setup_log "apt-get install ${missing} failed"; return 1; }
      done_pkgs="installed ${missing}"
    fi
  fi
  local engine_msg="engine not needed"
  if ((engine)); then
    engine_msg=$(ws_setup_engine) || { _ws_setup_log "${done_pkgs}; no Docker engine"; return 1; }
  fi
  _ws_setup_log "${done_pkgs}; ${engine_msg}"
}
