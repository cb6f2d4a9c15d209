#!/bin/sh
# The Feature's onCreateCommand and postStartCommand. The CLI starts lifecycle commands as soon
# as the container runs, not after the entrypoint returned; a Feature's commands run before
# devcontainer.json's of the same kind, so this wait puts every later command after Docker's
# start. It never fails the dev container: a command that needs docker reports that itself.
# shellcheck disable=SC1091 # written by install.sh at build time
. /usr/local/share/ws-init/feature.env
/usr/local/bin/ws-init wait-docker --timeout "$WS_FEATURE_TIMEOUT" && exit 0
echo "ws-init: Docker is not answering; see the container's log and \`sudo ws-init doctor\`" >&2
exit 0
