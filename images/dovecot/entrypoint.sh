#!/bin/bash
# Runs Dovecot in the foreground once the controller has rendered a release, with its
# auth policy server beside it.
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

# The auth policy server (images/dovecot/auth_policy.py), as the dovecot user, restarted
# whenever it exits. Dovecot does not wait for it: until it answers, logins go ahead
# (auth_policy_reject_on_fail = no). This loop never ends, so Dovecot's master, which
# becomes its parent below, never has to reap it.
(
  while true; do
    setpriv --reuid=dovecot --regid=dovecot --init-groups mailyard-auth-policy serve || true
    echo "auth policy server exited; restarting it in 2 s" >&2
    sleep 2
  done
) &

exec dovecot -F
