# shellcheck shell=bash
# The platform layer of image/build.sh (sourced by it and by tests/multiarch/run.sh): which
# platforms to build, the static ws-init for each, foreign-architecture emulation (binfmt +
# qemu-user) and the per-architecture base image. Uses build.sh's log/die/phase/is_root,
# build_ws_init, resolve_base, debootstrap_base and its SUITE/BASE_IMAGE/LOCAL_BASE/CACHE_DIR.
#
# Platforms: linux/amd64 and linux/arm64. The host's architecture keeps build.sh's names
# (ws-init/debian-base:SUITE, debian-base-SUITE.tar); a foreign one adds its Debian
# architecture (ws-init/debian-base:SUITE-arm64, debian-base-SUITE-arm64.tar).

# Pins of the cross toolchain for foreign targets: zig as C compiler and linker (ring's C
# code), in a venv under the cache, created on first use.
ZIGBUILD_REQUIREMENTS=("cargo-zigbuild==0.24.0" "ziglang==0.17.0")

# build.sh's host targets are x86_64's; on an arm64 host its ws-init is built natively the same way.
host_targets() {
  MUSL=$(rust_target_of "$(host_arch)")
  # shellcheck disable=SC2034 # build.sh's
  GNU=${MUSL%-musl}-gnu
}

# The Debian architecture (amd64, arm64) of a platform; dies on any other.
platform_arch() {
  case $1 in
    linux/amd64) echo amd64 ;;
    linux/arm64 | linux/arm64/v8) echo arm64 ;;
    *) die "unsupported platform '$1' in WS_PLATFORMS: use linux/amd64 and/or linux/arm64" ;;
  esac
}

host_arch() {
  case $(uname -m) in
    x86_64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) die "unsupported host architecture $(uname -m): ws-init images are built for amd64 and arm64" ;;
  esac
}

# The platforms of WS_PLATFORMS (comma-separated), default the host's, one per line.
wanted_platforms() {
  local list=${WS_PLATFORMS:-linux/$(host_arch)} p
  local -a out=()
  IFS=',' read -ra out <<<"$list"
  for p in "${out[@]}"; do
    p=${p//[[:space:]]/}
    [[ -z $p ]] || { platform_arch "$p" >/dev/null && echo "$p"; }
  done
}

rust_target_of() {
  case $1 in
    amd64) echo x86_64-unknown-linux-musl ;;
    arm64) echo aarch64-unknown-linux-musl ;;
  esac
}

# The qemu-user binfmt handler name and the `file` word of an architecture.
qemu_name_of() { case $1 in amd64) echo qemu-x86_64 ;; arm64) echo qemu-aarch64 ;; esac; }
file_word_of() { case $1 in amd64) echo x86-64 ;; arm64) echo aarch64 ;; esac; }

# True when the kernel runs binaries of ARCH through qemu-user with the F (fix binary) flag:
# the interpreter is opened at registration, so it works inside containers and chroots that
# do not contain it.
binfmt_ready() {
  local f
  f=/proc/sys/fs/binfmt_misc/$(qemu_name_of "$1")
  [[ -r $f ]] && grep -qx enabled "$f" && grep -Eq '^flags: .*F' "$f"
}

# Makes foreign ARCH runnable: Debian's qemu-user-static and its binfmt handler (root only).
ensure_binfmt() {
  local arch=$1 qemu
  [[ $arch != "$(host_arch)" ]] || return 0
  binfmt_ready "$arch" && return 0
  qemu=$(qemu_name_of "$arch")
  is_root || die "${arch} binaries need qemu-user's binfmt handler ${qemu} with the F flag: as root, apt-get install qemu-user-static binfmt-support && update-binfmts --enable ${qemu}"
  if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
      || die "cannot mount binfmt_misc at /proc/sys/fs/binfmt_misc (needed to run ${arch} binaries)"
  fi
  if [[ ! -e /usr/share/binfmts/$qemu ]]; then
    log "installing qemu-user-static (runs ${arch} binaries)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-user-static binfmt-support >&2 \
      || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-user-static binfmt-support >&2; } \
      || die "cannot install qemu-user-static: apt-get install qemu-user-static binfmt-support"
  fi
  update-binfmts --enable "$qemu" >&2 || true
  binfmt_ready "$arch" \
    || die "binfmt handler ${qemu} is not enabled with the F flag ($(tr '\n' ' ' <"/proc/sys/fs/binfmt_misc/$qemu" 2>/dev/null)): run update-binfmts --enable ${qemu}"
}

# Prints the bin directory of the venv with cargo-zigbuild and zig.
zigbuild_venv() {
  local venv=${XDG_CACHE_HOME:-$HOME/.cache}/ws-init/zigbuild-venv
  local stamp=$venv/.ws-init-requirements want
  want=$(printf '%s\n' "${ZIGBUILD_REQUIREMENTS[@]}")
  mkdir -p "$(dirname "$venv")"
  (
    flock 9
    [[ -x $venv/bin/cargo-zigbuild && -f $stamp && "$(cat "$stamp")" == "$want" ]] && exit 0
    log "installing ${ZIGBUILD_REQUIREMENTS[*]} into ${venv}"
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv" \
      || die "cannot create a Python venv at ${venv}: apt-get install python3-venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${ZIGBUILD_REQUIREMENTS[@]}" >&2 \
      || die "pip could not install ${ZIGBUILD_REQUIREMENTS[*]} (is PyPI reachable?)"
    printf '%s\n' "$want" >"$stamp"
  ) 9>"$venv.lock" || exit 1
  printf '%s\n' "$venv/bin"
}

# Sets BIN to the static ws-init for ARCH, with ws-init-bringup next to it (build.sh's
# bringup_of): the host's with build.sh's build_ws_init, a foreign one with cargo zigbuild (the
# static, non-PIE flags of .cargo/config.toml apply; it builds both programs).
build_ws_init_for() {
  local arch=$1 target bin zbin
  if [[ $arch == "$(host_arch)" ]]; then
    build_ws_init
  else
    target=$(rust_target_of "$arch")
    if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$target"; then
      rustup target add "$target" >&2 || die "cannot add the Rust target ${target}: rustup target add ${target}"
    fi
    zbin=$(zigbuild_venv)
    (cd "$ROOT" && PATH=$zbin:$PATH cargo zigbuild --release --locked --target "$target" >&2)
    bin=$(target_dir)/$target/release/ws-init
    check_static "$bin"
    BIN=$bin
  fi
  if command -v file >/dev/null 2>&1; then
    local b
    for b in "$BIN" "$(bringup_of "$BIN")"; do
      file -L "$b" | grep -q "$(file_word_of "$arch")" || die "${b} is not an ${arch} binary: $(file -L "$b")"
    done
  fi
}

# The architecture of a local image, empty when there is none.
image_arch() { docker image inspect --format '{{.Architecture}}' "$1" 2>/dev/null || true; }

# Sets BASE to the image to build FROM for ARCH. The host's: build.sh's resolve_base. A
# foreign one: ws-init/debian-base:SUITE-ARCH when made before, else BASE_IMAGE pulled for
# that platform (retagged, so BASE_IMAGE keeps naming the host's image), else debootstrap.
resolve_base_for() {
  local arch=$1 local_base old
  if [[ $arch == "$(host_arch)" ]]; then
    resolve_base
    [[ $(image_arch "$BASE") == "$arch" ]] \
      || die "base ${BASE} is $(image_arch "$BASE"), not ${arch}: docker rmi ${BASE} and build again"
    return 0
  fi
  # shellcheck disable=SC2153 # LOCAL_BASE is build.sh's
  local_base=${LOCAL_BASE}-${arch}
  if [[ $(image_arch "$local_base") == "$arch" ]]; then
    log "base: ${local_base} (made here earlier)"
    BASE=$local_base
    return 0
  fi
  old=$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)
  if timeout "$PULL_TIMEOUT" docker pull --platform "linux/${arch}" "$BASE_IMAGE" >/dev/null 2>&1 \
    && [[ $(image_arch "$BASE_IMAGE") == "$arch" ]]; then
    docker tag "$BASE_IMAGE" "$local_base"
    if [[ -n $old ]]; then docker tag "$old" "$BASE_IMAGE"; else docker rmi "$BASE_IMAGE" >/dev/null; fi
    log "base: ${BASE_IMAGE} for linux/${arch} (pulled, tagged ${local_base})"
    BASE=$local_base
    return 0
  fi
  [[ -z $old ]] || docker tag "$old" "$BASE_IMAGE" 2>/dev/null || true
  log "${BASE_IMAGE} for linux/${arch} cannot be pulled; making ${local_base}"
  DEBOOTSTRAP_ARCH=$arch LOCAL_BASE=$local_base debootstrap_base
  BASE=$local_base
}

# import_foreign_base TARBALL TAG ARCH: the rootfs tarball as an image of ARCH. `docker import
# --platform` of Docker 20.10 labels it with the host's architecture; a FROM scratch build with
# --platform labels it right. The context is a hard link next to the tarball when possible.
import_foreign_base() {
  local tarball=$1 tag=$2 arch=$3 ctx
  ctx=$(mktemp -d "$(dirname "$tarball")/import.XXXXXX")
  TMP_DIRS+=("$ctx")
  ln "$tarball" "$ctx/rootfs.tar" 2>/dev/null || cp "$tarball" "$ctx/rootfs.tar"
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' >"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q --platform "linux/${arch}" -t "$tag" "$ctx" >/dev/null
  rm -rf "$ctx"
  [[ $(image_arch "$tag") == "$arch" ]] || die "${tag} was imported as $(image_arch "$tag"), not ${arch}"
}

# install_shared SRC DEST: copies SRC to DEST (0755) by rename, so builds of
# several images at once (CI builds three) never see, nor trip over, a half
# copy: `install` onto one path from two processes fails with "File exists".
install_shared() {
  local tmp
  tmp=$(mktemp "$2.XXXXXX") || die "cannot create a file next to $2"
  if ! { cp "$1" "$tmp" && chmod 0755 "$tmp" && mv -f "$tmp" "$2"; }; then
    rm -f "$tmp"
    die "cannot copy $1 to $2"
  fi
}

# build_platform PLATFORM TAG: the static binary, the base and the image of one platform.
build_platform() {
  local platform=$1 tag=$2 arch ctx
  arch=$(platform_arch "$platform")
  phase "emulation for ${arch}" ensure_binfmt "$arch"
  phase "cargo build (static ws-init, ${arch})" build_ws_init_for "$arch"
  if [[ $arch == "$(host_arch)" ]]; then
    # The Dev Container Feature ships the host's binaries in its folder (gitignored).
    install_shared "$BIN" "$ROOT/features/ws-init/ws-init"
    install_shared "$(bringup_of "$BIN")" "$ROOT/features/ws-init/ws-init-bringup"
    log "copied ws-init and ws-init-bringup into features/ws-init/ (the Feature's install.sh installs them from there)"
  fi
  phase "base image (${arch})" resolve_base_for "$arch"
  # A base made here gets its apt sources from build.sh (a pulled one keeps its own).
  APT_SOURCES=""
  if [[ $BASE == "$LOCAL_BASE" || $BASE == "${LOCAL_BASE}-${arch}" ]]; then
    image_apt_sources
  fi
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/ws-init-ctx.XXXXXX")
  TMP_DIRS+=("$ctx")
  make_context "$ctx" "$arch"
  # TARGETARCH: BuildKit sets it, the legacy builder does not.
  phase "docker build ${tag} (${platform})" env DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" \
    docker build --platform "$platform" --build-arg TARGETARCH="$arch" \
    --build-arg BASE_IMAGE="$BASE" --build-arg APT_OPTS="$APT_OPTS" \
    --build-arg APT_SOURCES="$APT_SOURCES" -t "$tag" "$ctx" >&2
  [[ $(image_arch "$tag") == "$arch" ]] || die "${tag} was built as $(image_arch "$tag"), not ${arch}"
  log "built ${tag} (${platform})"
}

# make_context DIR ARCH...: a tiny build context (the Dockerfile, the files the image adds,
# bin/ARCH/ws-init and bin/ARCH/ws-init-bringup for each ARCH: the Dockerfile copies
# bin/${TARGETARCH}/*). Needs BIN_OF[ARCH] or, for a single ARCH, BIN. Mode 0755: the image
# keeps it, and ws-init runs as root only programs no one but root can write.
make_context() {
  local ctx=$1 arch
  shift
  cp "$ROOT/Dockerfile" "$ROOT/.dockerignore" "$ctx/"
  for arch in "$@"; do
    mkdir -p "$ctx/bin/$arch"
    install -m 0755 "${BIN_OF[$arch]:-$BIN}" "$ctx/bin/$arch/ws-init"
    install -m 0755 "$(bringup_of "${BIN_OF[$arch]:-$BIN}")" "$ctx/bin/$arch/ws-init-bringup"
  done
  if [[ -d $ROOT/image/rootfs ]]; then
    mkdir -p "$ctx/image" && cp -a "$ROOT/image/rootfs" "$ctx/image/"
  fi
}

declare -A BIN_OF=()

# build_platforms TAG: every platform of WS_PLATFORMS. One platform: TAG. Several: TAG-ARCH
# each (a multi-arch manifest needs a registry; the publishing workflow makes it).
# WS_CONTEXT_ONLY=DIR: build only the binaries and write one build context for all platforms
# to DIR (for `docker buildx build --platform ...` in the publishing workflow).
build_platforms() {
  local tag=$1 p arch
  local -a platforms=() arches=()
  mapfile -t platforms < <(wanted_platforms)
  ((${#platforms[@]})) || die "WS_PLATFORMS names no platform"
  if [[ -n ${WS_CONTEXT_ONLY:-} ]]; then
    for p in "${platforms[@]}"; do
      arch=$(platform_arch "$p")
      phase "cargo build (static ws-init, ${arch})" build_ws_init_for "$arch"
      BIN_OF[$arch]=$BIN
      arches+=("$arch")
    done
    mkdir -p "$WS_CONTEXT_ONLY"
    make_context "$WS_CONTEXT_ONLY" "${arches[@]}"
    log "build context for ${platforms[*]} in ${WS_CONTEXT_ONLY}"
    return 0
  fi
  if ((${#platforms[@]} == 1)); then
    build_platform "${platforms[0]}" "$tag"
    return 0
  fi
  for p in "${platforms[@]}"; do
    build_platform "$p" "${tag}-$(platform_arch "$p")"
  done
}
