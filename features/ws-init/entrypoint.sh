#!/bin/sh
# The Feature's entrypoint. The Dev Containers CLI runs it with no arguments inside
# `sh -c '...; ENTRYPOINT; exec "$@"'`, so it must return: ws-init start-docker forks a
# supervisor for dockerd and returns once Docker answers (bounded by startTimeout). The
# container always comes up; when Docker cannot, ws-init says why on the container's log.
# shellcheck disable=SC1091 # written by install.sh at build time
. /usr/local/share/ws-init/feature.env
/usr/local/bin/ws-init start-docker --timeout "$WS_FEATURE_TIMEOUT" || true
