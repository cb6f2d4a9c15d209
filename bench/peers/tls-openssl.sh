#!/bin/sh
# REIMPLEMENTATION for benchmarks, not upstream code: certificate generation with the
# behaviour docker-library's dockerd-entrypoint.sh has (as described in design §2),
# written here from that description. openssl, RSA 4096, 825 days; CA, server and client
# under DIR/{ca,server,client}; keys are reused when present, certificates re-issued on
# every call; server/{ca,cert,key}.pem without ca/key.pem = user-managed CA: only verify.
#
#   sh tls-openssl.sh DIR          (also sourced by dockerd-entrypoint.sh)
set -eu

peer_tls_key() {
	# Keys survive restarts; only a missing or empty key is generated.
	[ -s "$1" ] || openssl genrsa -out "$1" 4096 2>/dev/null
}

# Comma-separated subjectAltName value: every interface address, the host names,
# docker, localhost, and DOCKER_TLS_SAN (entries carry their own DNS:/IP: prefix).
peer_tls_san() {
	{
		printf 'IP:127.0.0.1\nIP:::1\n'
		for ip in $(hostname -I 2>/dev/null || :); do printf 'IP:%s\n' "$ip"; done
		{
			cat /etc/hostname 2>/dev/null || :
			hostname -s 2>/dev/null || :
			hostname -f 2>/dev/null || :
			printf 'docker\nlocalhost\n'
		} | sed '/^$/d; s/^/DNS:/'
		for san in ${DOCKER_TLS_SAN:-}; do printf '%s\n' "$san"; done
	} | sort -u | paste -sd, -
}

# peer_tls_leaf DIR NAME USAGE [SAN]: key, request and CA-signed certificate for NAME.
peer_tls_leaf() {
	d=$1 name=$2 usage=$3 san=${4:-}
	mkdir -p "$d/$name"
	peer_tls_key "$d/$name/key.pem"
	openssl req -new -key "$d/$name/key.pem" -out "$d/$name/csr.pem" \
		-subj "/CN=docker:dind $name"
	{
		echo '[ext]'
		echo 'keyUsage = critical,digitalSignature,keyEncipherment'
		echo "extendedKeyUsage = $usage"
		[ -z "$san" ] || echo "subjectAltName = $san"
	} >"$d/$name/openssl.cnf"
	openssl x509 -req -in "$d/$name/csr.pem" -CA "$d/ca/cert.pem" -CAkey "$d/ca/key.pem" \
		-CAcreateserial -days 825 -sha256 -extfile "$d/$name/openssl.cnf" -extensions ext \
		-out "$d/$name/cert.pem" 2>/dev/null
	cp "$d/ca/cert.pem" "$d/$name/ca.pem"
	openssl verify -CAfile "$d/$name/ca.pem" "$d/$name/cert.pem" >/dev/null
}

peer_tls_generate() {
	d=$1
	if [ -s "$d/server/ca.pem" ] && [ -s "$d/server/cert.pem" ] && [ -s "$d/server/key.pem" ] \
		&& [ ! -s "$d/ca/key.pem" ]; then
		openssl verify -CAfile "$d/server/ca.pem" "$d/server/cert.pem" >/dev/null
		return 0
	fi
	mkdir -p "$d/ca"
	peer_tls_key "$d/ca/key.pem"
	openssl req -new -x509 -key "$d/ca/key.pem" -out "$d/ca/cert.pem" -days 825 -sha256 \
		-subj '/CN=docker:dind CA' \
		-addext 'basicConstraints = critical,CA:TRUE' \
		-addext 'keyUsage = critical,digitalSignature,keyCertSign'
	peer_tls_leaf "$d" server serverAuth "$(peer_tls_san)"
	peer_tls_leaf "$d" client clientAuth
	# Client containers sharing the volume run as any user.
	chmod 0644 "$d/client/key.pem"
}

# Run directly (not sourced by the entrypoint): generate under $1.
case "$0" in
*tls-openssl.sh)
	[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
	peer_tls_generate "$1"
	;;
esac
