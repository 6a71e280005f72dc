#!/bin/bash
# Checks a staged release with OpenDKIM's own parser before it goes live:
#   mailyard-opendkim-validate RELEASE_DIR
# `opendkim -n` parses a configuration file (and opens its data sets) and exits; both
# instances' files are checked. Prints OpenDKIM's complaints, prefixed with the file.
set -uo pipefail
release=${1:?directory of the staged release}
[[ $release == /etc/mailyard/opendkim/releases/* && -d $release ]] || { echo "no release at $release"; exit 1; }
status=0
for config in "$release/opendkim.conf" "$release/opendkim-ed25519.conf"; do
  [ -f "$config" ] || { echo "$(basename "$config"): missing"; status=1; continue; }
  if ! output=$(opendkim -n -x "$config" 2>&1); then
    status=1
  fi
  [ -z "$output" ] || printf '%s\n' "$output" | sed "s|^|$(basename "$config"): |"
done
exit $status
