#!/bin/bash
# Runs OpenDKIM in the foreground once the controller has rendered a release.
set -euo pipefail

# Both milters listen on the `milter` network only, which only Postfix shares.
mailyard-bind-names opendkim-milter

echo "starting on release $(mailyard-await-release opendkim.conf)"

# OpenDKIM logs only to syslog: a syslogd in this container writes it to the log.
busybox syslogd -n -O /dev/stdout &

mkdir -p /run/opendkim
chown opendkim:opendkim /run/opendkim
# Two instances (one signature algorithm per OpenDKIM process): RSA keys on 8891,
# Ed25519 keys on 8892. -x: the file through the container's `active` link, so a reload
# (SIGUSR1, mailyard-opendkim-reload) re-reads whichever release is active by then.
# -f: foreground; -l: log through syslog. If either stops, the container stops (and
# its restart policy brings both back).
opendkim -f -l -x /etc/mailyard/active/opendkim-ed25519.conf -P /run/opendkim/opendkim-ed25519.pid &
ed25519=$!
opendkim -f -l -x /etc/mailyard/active/opendkim.conf -P /run/opendkim/opendkim.pid &
rsa=$!
trap 'kill -TERM $rsa $ed25519 2>/dev/null' TERM INT
set +e
wait -n $rsa $ed25519
status=$?
echo "an OpenDKIM instance exited with status $status; stopping the container"
kill -TERM $rsa $ed25519 2>/dev/null
wait
exit $status
