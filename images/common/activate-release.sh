#!/bin/bash
# Points this container's /etc/mailyard/active at a release of its service, atomically.
#   mailyard-activate RELEASE   the controller, one replica at a time during an apply
#   mailyard-activate           the committed release (the volume's `current`): at start
# Prints the release now active. Each container has its own link, so replicas of one
# service can be moved (and moved back) one by one while sharing the config volume.
set -euo pipefail
service=${MAILYARD_SERVICE:?MAILYARD_SERVICE is not set}
root=/etc/mailyard/$service
if [ $# -gt 0 ]; then
  release=$1
else
  release=$(basename "$(readlink "$root/current")")
fi
if ! [[ $release =~ ^[0-9a-f]{20}(\.[0-9a-z]{6})?$ ]]; then
  echo "not a release name: $release" >&2
  exit 2
fi
if [ ! -d "$root/releases/$release" ]; then
  echo "no release $release in $root/releases" >&2
  exit 1
fi
ln -sfn "$root/releases/$release" /etc/mailyard/.active.new
mv -Tf /etc/mailyard/.active.new /etc/mailyard/active
echo "$release"
