#!/bin/bash
# Checks a staged dovecot.conf with Dovecot's own parser before it goes live, and the
# release's auth-policy.json with the auth policy server that will read it:
#   mailyard-dovecot-validate RELEASE_DIR/dovecot.conf
# Prints doveconf's errors and warnings (and the policy server's); exit status is
# doveconf's, or the policy server's when doveconf accepts.
set -uo pipefail
config=${1:?dovecot.conf of the staged release}
[[ $config == /etc/mailyard/dovecot/releases/*/dovecot.conf && -f $config ]] || { echo "no release at $config"; exit 1; }
doveconf -c "$config" -n 2>&1 >/dev/null || exit
policy=$(dirname "$config")/auth-policy.json
# Releases rendered before the auth policy server existed have no such file.
if [ -e "$policy" ]; then
  mailyard-auth-policy check "$policy"
fi
