#!/usr/bin/env bash
# Build the workspace image: static ws-init on the host, a Debian base image (local, pulled, or
# made here with debootstrap when no registry is reachable), then `docker build`. The static
# binaries (ws-init, the resident PID 1, and ws-init-bringup, the bring-up it runs) are also
# copied into features/ws-init/, where the Dev Container Feature takes them from.
#
#   image/build.sh [TAG]        default TAG: ws-init/workspace:dev
#
# Environment:
#   WS_PLATFORMS      platforms to build, comma-separated: linux/amd64, linux/arm64 (default:
#                     the host's). One platform: TAG is its image; several: TAG-amd64, TAG-arm64.
#                     A foreign one runs under qemu-user (image/platform.sh)
#   WS_CONTEXT_ONLY   a directory: build only the static binaries and write the build context
#                     for all WS_PLATFORMS there (for `docker buildx build`), no image
#   WS_BASE_SUITE     Debian suite: trixie (default), bookworm or sid
#   BASE_IMAGE        base image to build FROM (default debian:SUITE-slim; its tag names the
#                     suite when WS_BASE_SUITE is not set)
#   WS_PULL_TIMEOUT   seconds to wait for `docker pull` of BASE_IMAGE (default 30)
#   DOCKER_BUILDKIT   builder for the final build (default 0: the legacy builder works everywhere)
#
# The Debian mirror is read at run time from the host's apt configuration; it is never
# written into the repository.
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/lib/setup.sh
source "$ROOT/tests/lib/setup.sh"
TAG=${1:-ws-init/workspace:dev}
# The suite: WS_BASE_SUITE, else the tag of a debian:SUITE[-slim] BASE_IMAGE, else trixie.
if [[ -n ${WS_BASE_SUITE:-} ]]; then
  SUITE=$WS_BASE_SUITE
elif [[ ${BASE_IMAGE:-} =~ ^debian:([a-z]+)(-slim)?$ ]]; then
  SUITE=${BASH_REMATCH[1]}
else
  SUITE=trixie
fi
BASE_IMAGE=${BASE_IMAGE:-debian:${SUITE}-slim}
# sid's Release file on a snapshot mirror can be past its Valid-Until date.
APT_OPTS=""
[[ $SUITE != sid && $SUITE != unstable ]] || APT_OPTS="-o Acquire::Check-Valid-Until=false"
LOCAL_BASE=ws-init/debian-base:${SUITE}
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/ws-init
PULL_TIMEOUT=${WS_PULL_TIMEOUT:-30}
MUSL=x86_64-unknown-linux-musl
GNU=x86_64-unknown-linux-gnu

log() { printf '[build.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Temporary directories removed on exit, however the script ends.
TMP_DIRS=()
cleanup() {
  local d
  for d in "${TMP_DIRS[@]}"; do
    # A debootstrap rootfs may still have /proc mounted: never rm -rf into it.
    if mountpoint -q "$d"; then umount -R "$d" 2>/dev/null || umount -R -l "$d"; fi
  done
  if ((${#TMP_DIRS[@]})); then rm -rf "${TMP_DIRS[@]}"; fi
}
trap cleanup EXIT

# phase NAME CMD...: run CMD (in this shell, so it may set globals) and print its duration.
# A failing CMD ends the script (set -e) with its own message.
phase() {
  local name=$1 start
  shift
  log "== ${name}"
  start=$(date +%s.%N)
  "$@"
  log "== ${name}: $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
}

is_root() { [[ $(id -u) -eq 0 ]]; }

ensure_toolchain() {
  if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$MUSL"; then
    rustup target add "$MUSL" || log "warning: could not add target ${MUSL}; will try ${GNU} with crt-static"
  fi
}

target_dir() {
  local dir=${CARGO_TARGET_DIR:-target}
  [[ $dir = /* ]] || dir=$ROOT/$dir
  printf '%s\n' "$dir"
}

# check_static BIN: both programs built next to each other (ws-init and ws-init-bringup), each
# statically linked.
check_static() {
  local b
  for b in "$1" "$(bringup_of "$1")"; do
    [[ -x $b ]] || die "cargo did not produce ${b}"
    if command -v file >/dev/null 2>&1; then
      file -L "$b" | grep -Eq 'statically linked|static-pie linked' \
        || die "${b} is not statically linked: $(file -L "$b")"
    fi
  done
}

# The bring-up program cargo builds next to ws-init BIN.
bringup_of() { printf '%s/ws-init-bringup\n' "$(dirname "$1")"; }

# Sets BIN to the static ws-init it built (ws-init-bringup is next to it: bringup_of).
build_ws_init() {
  local tdir bin
  tdir=$(target_dir)
  cd "$ROOT"
  if { ! command -v rustup >/dev/null 2>&1 || rustup target list --installed | grep -qx "$MUSL"; } \
    && command -v musl-gcc >/dev/null 2>&1 \
    && cargo build --release --locked --target "$MUSL" >&2; then
    bin=$tdir/$MUSL/release/ws-init
  else
    log "musl build unavailable; building ${GNU} with crt-static"
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
      cargo build --release --locked --target "$GNU" >&2
    bin=$tdir/$GNU/release/ws-init
  fi
  check_static "$bin"
  BIN=$bin
}

# The deb822 stanzas and one-line `deb` entries of the host's apt configuration, as lines
# "URI SUITE..." (comments and other types left out).
host_apt_entries() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] || continue
    awk '
      function flush() { if (uris != "" && deb) print uris, suites; uris = ""; suites = ""; deb = 0 }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      tolower($1) == "uris:" && uris == "" { uris = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) suites = suites " " $i }
      END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r $f ]] || continue
    awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                       print $i, $(i + 1) }' "$f"
  done
}

# Debian's suite names (a host entry naming one of them is a Debian source).
DEBIAN_SUITES="buster bullseye bookworm trixie forky duke sid stable oldstable oldoldstable testing unstable experimental"

# The Debian mirror this host's apt uses, whatever suite is wanted (the host may list only its
# own suite): the first entry for Debian's main archive (a suite not ending in -security).
# With `security`: the first entry for the security archive (empty when there is none).
# Nothing is written into the repository.
debian_mirror() {
  local want=${1:-main} uri
  # Only entries for a Debian suite: a host may list other vendors' repositories too.
  uri=$(host_apt_entries | awk -v want="$want" -v debian="$DEBIAN_SUITES" '
    { sec = 0; deb = 0
      for (i = 2; i <= NF; i++) {
        if ($i ~ /-security$/) sec = 1
        s = $i; sub(/-.*/, "", s); if (index(" " debian " ", " " s " ")) deb = 1
      }
      if (deb && (want == "security") == sec) { print $1; exit } }')
  if [[ -z $uri && $want = main ]]; then
    die "no Debian source in this host's apt configuration (/etc/apt/sources.list.d/*.sources, /etc/apt/sources.list): image/build.sh makes the base image from the mirror named there. Add your Debian mirror to the host's apt sources, or set BASE_IMAGE to an image that exists locally or can be pulled"
  fi
  printf '%s\n' "$uri"
}

# The apt sources of the image when its base was made here: SUITE, SUITE-updates and
# SUITE-security where Debian has them (sid/unstable have neither), on the host's mirrors.
# Sets APT_SOURCES.
image_apt_sources() {
  local mirror security
  mirror=$(debian_mirror main)
  APT_SOURCES="deb ${mirror} ${SUITE} main"
  case $SUITE in
    sid | unstable | experimental) return 0 ;;
  esac
  APT_SOURCES+=$'\n'"deb ${mirror} ${SUITE}-updates main"
  security=$(debian_mirror security)
  if [[ -n $security ]]; then
    APT_SOURCES+=$'\n'"deb ${security} ${SUITE}-security main"
  else
    log "note: the host's apt configuration names no Debian security archive: the image gets no ${SUITE}-security source"
  fi
}

debootstrap_base() {
  local mirror tarball rootfs
  # A foreign architecture (image/platform.sh sets DEBOOTSTRAP_ARCH) has its own tarball.
  tarball=$CACHE_DIR/debian-base-${SUITE}${DEBOOTSTRAP_ARCH:+-$DEBOOTSTRAP_ARCH}.tar
  mkdir -p "$CACHE_DIR"
  if [[ ! -s $tarball ]]; then
    is_root || die "no base image: ${BASE_IMAGE} is not local, cannot be pulled, and debootstrap needs root"
    command -v debootstrap >/dev/null 2>&1 || die "no base image and no debootstrap: apt-get install debootstrap"
    mirror=$(debian_mirror)
    rootfs=$(mktemp -d "${TMPDIR:-/tmp}/ws-init-rootfs.XXXXXX")
    TMP_DIRS+=("$rootfs")
    # A private mount of its own: what debootstrap mounts inside (/proc) propagates to no
    # container started meanwhile, whose copy would keep the unmount busy (seen with the slow
    # foreign-architecture debootstrap: /proc left mounted and then tarred).
    mount --bind "$rootfs" "$rootfs"
    mount --make-private "$rootfs"
    local dlog=$CACHE_DIR/debootstrap-${SUITE}${DEBOOTSTRAP_ARCH:+-$DEBOOTSTRAP_ARCH}.log
    log "debootstrap --variant=minbase ${DEBOOTSTRAP_ARCH:+--arch=$DEBOOTSTRAP_ARCH }${SUITE} (mirror from host apt configuration)"
    debootstrap --variant=minbase ${DEBOOTSTRAP_ARCH:+--arch="$DEBOOTSTRAP_ARCH"} "$SUITE" "$rootfs" "$mirror" >"$dlog" 2>&1 \
      || { tail -n 30 "$dlog" >&2; die "debootstrap failed (log: $dlog)"; }
    umount -R "$rootfs" 2>/dev/null || umount -R -l "$rootfs"
    ! mountpoint -q "$rootfs" || die "cannot unmount ${rootfs} after debootstrap: see findmnt -R ${rootfs}"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  else
    log "using cached ${tarball}"
  fi
  if [[ -n ${DEBOOTSTRAP_ARCH:-} ]]; then
    import_foreign_base "$tarball" "$LOCAL_BASE" "$DEBOOTSTRAP_ARCH"
  else
    docker import -c 'CMD ["bash"]' "$tarball" "$LOCAL_BASE" >/dev/null
  fi
}

# Sets BASE to the image to build FROM.
resolve_base() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base: ${BASE_IMAGE} (local)"
    BASE=$BASE_IMAGE
  elif timeout "$PULL_TIMEOUT" docker pull "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base: ${BASE_IMAGE} (pulled)"
    BASE=$BASE_IMAGE
  elif docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    log "base: ${LOCAL_BASE} (made here earlier)"
    BASE=$LOCAL_BASE
  else
    log "${BASE_IMAGE} cannot be pulled; making ${LOCAL_BASE}"
    debootstrap_base
    BASE=$LOCAL_BASE
  fi
}

BIN=""
BASE=""
APT_SOURCES=""

# shellcheck source=image/platform.sh
source "$ROOT/image/platform.sh"

main() {
  if [[ -z ${WS_CONTEXT_ONLY:-} ]]; then
    # The host packages (engine, debootstrap, musl-tools) and a running engine, as root.
    phase "setup" ws_setup build
    command -v docker >/dev/null 2>&1 || die "docker CLI not found: apt-get install docker.io (as root, this script installs it)"
    docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed)"
  fi
  host_targets
  phase "toolchain" ensure_toolchain
  build_platforms "$TAG"
}

main "$@"
