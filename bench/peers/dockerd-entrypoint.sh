#!/bin/sh
# REIMPLEMENTATION for benchmarks, not upstream code: the start-up behaviour of
# docker-library's dockerd-entrypoint.sh (docker:dind) as design §2 describes it, written
# here from that description so the upstream way can be measured with our image (no
# registry is reachable to pull docker:dind). Rootless mode is left out (the benchmarks
# run as root).
#
#   --entrypoint /peers/dockerd-entrypoint.sh IMAGE [dockerd flags...]
set -eu

here=$(dirname "$0")
# shellcheck source=tls-openssl.sh
. "$here/tls-openssl.sh"

# No arguments or only flags: they are dockerd's.
if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
	set -- dockerd "$@"
fi

if [ "$1" = dockerd ]; then
	has_host=
	for a in "$@"; do
		case "$a" in -H | -H* | --host | --host=*) has_host=1 ;; esac
	done
	if [ -n "${DOCKER_TLS_CERTDIR:-}" ]; then
		peer_tls_generate "$DOCKER_TLS_CERTDIR"
		if [ -z "$has_host" ]; then
			shift
			set -- dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2376 \
				--tlsverify --tlscacert "$DOCKER_TLS_CERTDIR/server/ca.pem" \
				--tlscert "$DOCKER_TLS_CERTDIR/server/cert.pem" \
				--tlskey "$DOCKER_TLS_CERTDIR/server/key.pem" "$@"
		fi
	elif [ -z "$has_host" ]; then
		# No TLS: plain TCP on 2375 (dockerd warns about it, and newer ones pause).
		shift
		set -- dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 "$@"
	fi

	# An unclean stop leaves pid files behind and dockerd then refuses to start.
	find /run /var/run -iname 'docker*.pid' -delete 2>/dev/null || :

	# iptables backend: DOCKER_IPTABLES_LEGACY decides when set; else legacy when this
	# kernel already has legacy tables, nft when `iptables -nL` works, else legacy when the
	# legacy binary works.
	legacy=
	if [ -n "${DOCKER_IPTABLES_LEGACY+set}" ]; then
		[ -z "$DOCKER_IPTABLES_LEGACY" ] || legacy=1
	else
		for t in ip_tables_names ip6_tables_names arp_tables_names; do
			if [ -s "/proc/net/$t" ]; then legacy=1; fi
		done
		if [ -z "$legacy" ] && ! iptables -nL >/dev/null 2>&1 \
			&& iptables-legacy -nL >/dev/null 2>&1; then
			legacy=1
		fi
	fi
	if [ -n "$legacy" ]; then
		links=/usr/local/sbin/.iptables-legacy
		mkdir -p "$links"
		for f in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
			ln -sf "/usr/sbin/$f-legacy" "$links/$f"
		done
		export PATH="$links:$PATH"
	fi
	iptables --version

	# dockerd under tini (docker-init) so containerd-shim zombies are reaped.
	set -- docker-init -- "$@"
fi

exec "$@"
