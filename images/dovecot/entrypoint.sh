#!/bin/bash
# Runs Dovecot in the foreground once the controller has rendered a release.
set -euo pipefail

# LMTP, SASL and quota status listen on the `delivery` network (Postfix), doveadm on
# `control` (the controller): dovecot.conf names these addresses.
mailyard-bind-names dovecot-delivery dovecot-control

echo "starting on release $(mailyard-await-release dovecot.conf)"

# Compile the global Sieve scripts next to them (the directory is the image's,
# writable), so deliveries do not compile them again each time. If this fails, Dovecot
# compiles them in memory on each delivery and they still work.
for script in /usr/local/share/mailyard/sieve/*.sieve; do
  sievec "$script" || echo "warning: could not precompile the Sieve script $script"
done

# The mail volume may be new (owned by root); maildirs must belong to vmail.
chown vmail:vmail /var/vmail
chmod 0770 /var/vmail

exec dovecot -F
