#!/bin/bash
# Checks a staged amavisd.conf with amavisd's own loader before it goes live:
#   mailyard-amavis-validate RELEASE_DIR/amavisd.conf
# `amavisd test-config` evaluates the file as the daemon would (Perl syntax, unknown
# variables under `use strict`, lookup tables), checks that user amavis can read it, and
# exits; the running daemon is not touched. Prints amavisd's errors; exits non-zero on a
# bad configuration.
set -uo pipefail
config=${1:?amavisd.conf of the staged release}
[[ $config == /etc/mailyard/amavis/releases/*/amavisd.conf && -f $config ]] || { echo "no release at $config"; exit 1; }
# Separate pid/lock files: test-config must never find or touch the running daemon's.
output=$(cd / && amavisd -X no_conf_file_writable_check -c "$config" -P /run/amavis/validate.pid -L /run/amavis/validate.lock test-config 2>&1)
status=$?
if [ $status -ne 0 ]; then
  [ -n "$output" ] && printf '%s\n' "$output"
  echo "amavisd test-config failed (exit $status) for $config"
  exit 1
fi
[ -n "$output" ] && printf '%s\n' "$output"
exit 0
