#!/bin/bash
# Runs Dovecot in the foreground once the controller has rendered a release.
set -euo pipefail

echo "starting on release $(mailyard-await-release dovecot.conf)"

# Compile the spam-to-Junk script next to it (the directory is the image's, writable),
# so deliveries do not compile it again each time. If this fails, Dovecot compiles it
# in memory on each delivery and still files spam into Junk.
sievec /usr/local/share/mailyard/sieve/spam-to-junk.sieve \
  || echo "warning: could not precompile the spam-to-Junk Sieve script"

# The mail volume may be new (owned by root); maildirs must belong to vmail.
chown vmail:vmail /var/vmail
chmod 0770 /var/vmail

exec dovecot -F
