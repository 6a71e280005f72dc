#!/bin/bash
# Checks a staged dovecot.conf with Dovecot's own parser before it goes live:
#   mailyard-dovecot-validate RELEASE_DIR/dovecot.conf
# Prints doveconf's errors and warnings; exit status is doveconf's.
set -uo pipefail
config=${1:?dovecot.conf of the staged release}
[[ $config == /etc/mailyard/dovecot/releases/*/dovecot.conf && -f $config ]] || { echo "no release at $config"; exit 1; }
doveconf -c "$config" -n 2>&1 >/dev/null
