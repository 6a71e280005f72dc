#!/bin/bash
# Runs Dovecot in the foreground once the controller has rendered a release.
set -euo pipefail

committed=/etc/mailyard/dovecot/current
waited=0
until [ -f "$committed/dovecot.conf" ]; do
  if [ $((waited % 30)) -eq 0 ]; then
    echo "waiting for the controller to render the Dovecot configuration into $committed"
  fi
  sleep 1
  waited=$((waited + 1))
done
# Start on the committed release (see images/common/activate-release.sh).
echo "starting on release $(mailyard-activate)"

# Compile the spam-to-Junk script next to it (the directory is the image's, writable),
# so deliveries do not compile it again each time. If this fails, Dovecot compiles it
# in memory on each delivery and still files spam into Junk.
sievec /usr/local/share/mailyard/sieve/spam-to-junk.sieve \
  || echo "warning: could not precompile the spam-to-Junk Sieve script"

# The mail volume may be new (owned by root); maildirs must belong to vmail.
chown vmail:vmail /var/vmail
chmod 0770 /var/vmail

exec dovecot -F
