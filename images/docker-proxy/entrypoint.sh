#!/bin/bash
# Renders HAProxy's rules for this compose project and runs HAProxy in the foreground.
#
# The rules name the project's containers, so the project comes from Docker itself: the
# compose label of this very container. HAProxy runs as root only to open the socket
# (owned by root); the container has no capability at all.
set -euo pipefail

socket=/var/run/docker.sock
run=/run/docker-proxy
[ -S "$socket" ] || { echo "no Docker socket at $socket (mount it read-only)" >&2; exit 1; }

project=${MAILYARD_COMPOSE_PROJECT:-}
if [ -z "$project" ]; then
  project=$(curl -sS --fail --unix-socket "$socket" "http://docker/containers/$(hostname)/json" |
    jq -r '.Config.Labels["com.docker.compose.project"] // empty')
fi
# It goes into regular expressions: only what compose allows in a project name.
if ! [[ $project =~ ^[a-z0-9][a-z0-9_-]{0,62}$ ]]; then
  echo "cannot tell this container's compose project (got ${project@Q}); set MAILYARD_COMPOSE_PROJECT" >&2
  exit 1
fi
escaped=${project//-/\\-}

mkdir -p "$run"
sed "s/@PROJECT@/$escaped/g" /usr/local/share/mailyard/haproxy.cfg.in >"$run/haproxy.cfg"
haproxy -c -q -f "$run/haproxy.cfg"
echo "passing on the controller's Docker calls for the containers of project $project"
exec haproxy -db -f "$run/haproxy.cfg"
