#!/usr/bin/env bash
# Build the workspace image: static ws-init on the host, a Debian base image (local, pulled, or
# made here with debootstrap when no registry is reachable), then `docker build`.
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
  # ring compiles C code: the musl target needs musl-gcc.
  if ! command -v musl-gcc >/dev/null 2>&1 && is_root && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends musl-tools \
      || { apt-get update && apt-get install -y --no-install-recommends musl-tools; } \
      || log "warning: could not install musl-tools"
  fi
}

target_dir() {
  local dir=${CARGO_TARGET_DIR:-target}
  [[ $dir = /* ]] || dir=$ROOT/$dir
  printf '%s\n' "$dir"
}

# Sets BIN to the static binary it built.
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
  [[ -x $bin ]] || die "cargo did not produce ${bin}"
  if command -v file >/dev/null 2>&1; then
    file -L "$bin" | grep -Eq 'statically linked|static-pie linked' \
      || die "${bin} is not statically linked: $(file -L "$bin")"
  fi
  BIN=$bin
}

# The Debian mirror this host's apt uses, whatever suite is wanted (the host may list only its
# own suite): the URIs: of the first deb822 stanza for Debian's main archive (not -security),
# else the first one-line `deb` entry of the same. Nothing is written into the repository.
debian_mirror() {
  local uri=""
  if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    uri=$(awk '
      function flush() { if (uris != "" && main && !done) { print uris; done = 1 } uris = ""; main = 0 }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "uris:" && uris == "" { uris = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i !~ /-security$/) main = 1 }
      END { flush() }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z $uri && -r /etc/apt/sources.list ]]; then
    uri=$(awk '
      $1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                    if ($(i + 1) !~ /-security$/) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [[ -n $uri ]] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list: add your Debian source there (or set BASE_IMAGE to a local image)"
  printf '%s\n' "$uri"
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
    log "debootstrap --variant=minbase ${DEBOOTSTRAP_ARCH:+--arch=$DEBOOTSTRAP_ARCH }${SUITE} (mirror from host apt configuration)"
    debootstrap --variant=minbase ${DEBOOTSTRAP_ARCH:+--arch="$DEBOOTSTRAP_ARCH"} "$SUITE" "$rootfs" "$mirror" >"$CACHE_DIR/debootstrap.log" 2>&1 \
      || { tail -n 30 "$CACHE_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE_DIR/debootstrap.log)"; }
    umount -R "$rootfs" 2>/dev/null || umount -R -l "$rootfs"
    ! mountpoint -q "$rootfs" || die "cannot unmount ${rootfs} after debootstrap: see findmnt -R ${rootfs}"
    # apt inside the base uses the same mirror as the host (debootstrap wrote only $SUITE main).
    if [[ -n $APT_OPTS ]]; then
      printf 'deb %s %s main\n' "$mirror" "$SUITE" >"$rootfs/etc/apt/sources.list"
      printf 'Acquire::Check-Valid-Until "false";\n' >"$rootfs/etc/apt/apt.conf.d/99ws-init-valid-until"
    else
      printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$SUITE" "$mirror" "$SUITE" \
        >"$rootfs/etc/apt/sources.list"
    fi
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

# shellcheck source=image/platform.sh
source "$ROOT/image/platform.sh"

main() {
  if [[ -z ${WS_CONTEXT_ONLY:-} ]]; then
    command -v docker >/dev/null 2>&1 || die "docker CLI not found"
    docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed)"
  fi
  host_targets
  phase "toolchain" ensure_toolchain
  build_platforms "$TAG"
}

main "$@"
