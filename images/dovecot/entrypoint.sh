#!/bin/bash
# Runs Dovecot in the foreground once the controller has rendered a release.
set -euo pipefail

release=/etc/mailyard/dovecot/current
waited=0
until [ -f "$release/dovecot.conf" ]; do
  if [ $((waited % 30)) -eq 0 ]; then
    echo "waiting for the controller to render the Dovecot configuration into $release"
  fi
  sleep 1
  waited=$((waited + 1))
done

# The mail volume may be new (owned by root); maildirs must belong to vmail.
chown vmail:vmail /var/vmail
chmod 0770 /var/vmail

exec dovecot -F
