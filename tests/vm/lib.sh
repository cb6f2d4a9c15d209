#!/usr/bin/env bash
# Shared helpers for the cgroup v2 VM test: cache paths, phase timing, mirror lookup.
# Sourced by the other scripts; never run directly.

WSVM_CACHE="${WSVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-init/vm}"
WSVM_SUITE="${WSVM_SUITE:-bookworm}"

wsvm_log() {
    printf '[wsvm %(%H:%M:%S)T] %s\n' -1 "$*" >&2
}

wsvm_die() {
    wsvm_log "ERROR: $*"
    exit 1
}

# Phase timing: `wsvm_phase NAME` starts a phase, `wsvm_phase_end` closes it and
# appends "NAME SECONDS" to WSVM_TIMINGS (a file) so run.sh can print a summary.
WSVM_PHASE=""
WSVM_PHASE_T0=0
wsvm_phase() {
    WSVM_PHASE="$1"
    WSVM_PHASE_T0=$SECONDS
    wsvm_log "phase ${WSVM_PHASE}: start"
}
wsvm_phase_end() {
    local dt=$((SECONDS - WSVM_PHASE_T0))
    wsvm_log "phase ${WSVM_PHASE}: ${dt}s"
    if [[ -n "${WSVM_TIMINGS:-}" ]]; then
        printf '%s %s\n' "$WSVM_PHASE" "$dt" >>"$WSVM_TIMINGS"
    fi
}

# The Debian mirror of this machine, read at run time so no address is ever
# committed. Takes the first URIs of the deb822 stanza whose Suites name the suite.
wsvm_mirror() {
    local sources="${WSVM_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
    [[ -r "$sources" ]] || wsvm_die "cannot read $sources: the VM root is debootstrapped from the mirror named there"
    awk -v suite="$WSVM_SUITE" '
        /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
        tolower($1) == "uris:" { uri = $2 }
        tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
        END { if (uri != "" && ok) print uri }
    ' "$sources" | head -n1
}

# Hash of files (content), for cache keys.
wsvm_hash_files() {
    cat "$@" | sha256sum | cut -c1-16
}

wsvm_need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || wsvm_die "missing tool '$tool' (apt-get install it)"
    done
}
