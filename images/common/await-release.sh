#!/bin/bash
# At container start: waits until the controller has committed a release of this
# container's service holding every FILE named, then activates that release
# (images/common/activate-release.sh) and prints its name.
#   mailyard-await-release main.cf master.cf
# Waiting messages go to stderr, so `$(mailyard-await-release ...)` still logs them.
set -euo pipefail
service=${MAILYARD_SERVICE:?MAILYARD_SERVICE is not set}
committed=/etc/mailyard/$service/current
[ $# -gt 0 ] || { echo "usage: mailyard-await-release FILE..." >&2; exit 2; }

rendered() {
  local file
  for file in "$@"; do
    [ -f "$committed/$file" ] || return 1
  done
}

waited=0
until rendered "$@"; do
  if [ $((waited % 30)) -eq 0 ]; then
    echo "waiting for the controller to render the $service configuration into $committed" >&2
  fi
  sleep 1
  waited=$((waited + 1))
done
# The committed release, whatever this container ran before a restart: a release that
# made the daemon exit (and so restarted the container) is never the committed one.
exec mailyard-activate
