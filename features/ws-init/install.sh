#!/usr/bin/env bash
# Installs the ws-init Feature: the static ws-init binaries shipped in this folder (ws-init, the
# resident PID 1, and ws-init-bringup, the bring-up it runs), Docker from
# the image's own distribution packages (Debian trixie or newer, Ubuntu 24.04 or newer: dockerd,
# the CLI, compose v2, buildx, iptables), the docker group (gid 999 where free) with the remote
# user in it, and the scripts the entrypoint and lifecycle hooks run.
#
# Options arrive as environment variables (MODE, TLS, DOCKERDARGS, IPTABLES, STARTTIMEOUT);
# _REMOTE_USER is set by the Dev Containers CLI.
set -euo pipefail

FEATURE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHARE=/usr/local/share/ws-init
MODE=${MODE:-auto}
TLS=${TLS:-false}
DOCKERDARGS=${DOCKERDARGS:-}
IPTABLES=${IPTABLES:-auto}
STARTTIMEOUT=${STARTTIMEOUT:-60}
REMOTE_USER=${_REMOTE_USER:-root}

log() { printf '[ws-init feature] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "install.sh must run as root (the Dev Containers CLI runs Features as root)"
case $MODE in auto | off) ;; *) die "option mode=\"$MODE\": expected auto or off" ;; esac
case $TLS in true | false) ;; *) die "option tls=\"$TLS\": expected true or false" ;; esac
case $IPTABLES in auto | legacy | nft) ;; *) die "option iptables=\"$IPTABLES\": expected auto, legacy or nft" ;; esac
[[ $STARTTIMEOUT =~ ^[0-9]+$ ]] || die "option startTimeout=\"$STARTTIMEOUT\": expected whole seconds"

# The binaries come with the Feature (image/build.sh puts them here; a published Feature's
# archive carries them): no download at install time. ws-init finds ws-init-bringup in
# ../libexec/ws-init/ from its own directory, and runs it as root only when root owns it and
# only root can write it (install sets both).
for b in ws-init ws-init-bringup; do
  [[ -f $FEATURE_DIR/$b ]] \
    || die "no ${b} binary in the Feature's folder ${FEATURE_DIR}: run image/build.sh (it copies the static ws-init and ws-init-bringup into features/ws-init/) before using or publishing the Feature"
done
install -m 0755 -o root -g root "$FEATURE_DIR/ws-init" /usr/local/bin/ws-init
install -m 0755 -o root -g root -D "$FEATURE_DIR/ws-init-bringup" /usr/local/libexec/ws-init/ws-init-bringup
for b in /usr/local/bin/ws-init /usr/local/libexec/ws-init/ws-init-bringup; do
  "$b" --version >&2 || die "${b} (from ${FEATURE_DIR}) does not run on this image (it must be the static x86_64 build)"
done

command -v apt-get >/dev/null 2>&1 \
  || die "this Feature installs Docker with apt: use a Debian (trixie or newer) or Ubuntu (24.04 or newer) based image"

export DEBIAN_FRONTEND=noninteractive
# Keep maintainer scripts from starting services during the build: ws-init starts dockerd.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT

# The docker group first, with gid 999 when it is free, so docker.io's postinst keeps it.
if ! getent group docker >/dev/null; then
  if getent group 999 >/dev/null; then
    log "gid 999 is taken ($(getent group 999 | cut -d: -f1)); the docker group gets a free system gid"
    groupadd --system docker
  else
    groupadd --system --gid 999 docker
  fi
fi

apt-get update
available() { [[ -n $(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" { print $2 }') ]]; }
packages=(ca-certificates docker.io iptables)
for p in docker-cli docker-buildx; do
  if available "$p"; then packages+=("$p"); fi
done
# Compose v2: Debian (trixie on) calls it docker-compose, Ubuntu docker-compose-v2.
if available docker-compose-v2; then packages+=(docker-compose-v2); else packages+=(docker-compose); fi
# dockerd must load its AppArmor profile on hosts with AppArmor on: it needs apparmor_parser.
if available apparmor; then packages+=(apparmor); fi
apt-get install -y --no-install-recommends "${packages[@]}"
apt-get clean
rm -rf /var/lib/apt/lists/*

docker compose version >&2 \
  || die "this image's packages have no Docker Compose v2 plugin: use Debian trixie or newer (bookworm's docker-compose is v1)"
docker buildx version >&2 \
  || die "this image's packages have no docker-buildx: use Debian trixie or newer"

DOCKER_GID=$(getent group docker | cut -d: -f3)
if [[ $REMOTE_USER != root ]]; then
  if id "$REMOTE_USER" >/dev/null 2>&1; then
    usermod -aG docker "$REMOTE_USER"
  else
    log "warning: the remote user ${REMOTE_USER} does not exist yet; ws-init adds it to group docker at start"
  fi
fi

# Runtime settings from the options. A variable the container already has (containerEnv,
# docker run -e) wins over the option.
mkdir -p "$SHARE"
install -m 0755 "$FEATURE_DIR/entrypoint.sh" "$FEATURE_DIR/wait-docker.sh" "$SHARE/"
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
# Prints: [ -n "${VAR+set}" ] || VAR='value'; export VAR
# shellcheck disable=SC2016 # the $ is for the generated file
setting() { printf '[ -n "${%s+set}" ] || %s=%s; export %s\n' "$1" "$1" "$(sq "$2")" "$1"; }
{
  echo "# Written by the ws-init Feature's install.sh from its options."
  setting WS_DOCKER_ENABLE_CLIENT "$([[ $MODE = off ]] && echo 0 || echo 1)"
  setting WS_DOCKER_GID "$DOCKER_GID"
  setting WS_FEATURE_TIMEOUT "$STARTTIMEOUT"
  if [[ $REMOTE_USER != root ]]; then setting WS_USER "$REMOTE_USER"; fi
  if [[ $TLS = true ]]; then setting DOCKER_TLS_CERTDIR /certs; fi
  if [[ -n $DOCKERDARGS ]]; then setting WS_DOCKERD_ARGS "$DOCKERDARGS"; fi
  case $IPTABLES in
    legacy) setting DOCKER_IPTABLES_LEGACY 1 ;;
    nft) setting DOCKER_IPTABLES_LEGACY "" ;;
  esac
} >"$SHARE/feature.env"
chmod 0644 "$SHARE/feature.env"
log "installed ws-init $(/usr/local/bin/ws-init --version | cut -d' ' -f2), $(docker --version), docker group gid ${DOCKER_GID}, remote user ${REMOTE_USER}"
