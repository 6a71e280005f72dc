#!/bin/bash
# Runs Postfix in the foreground once the controller has rendered a release.
set -euo pipefail

committed=/etc/mailyard/postfix/current
waited=0
until [ -f "$committed/main.cf" ] && [ -f "$committed/master.cf" ]; do
  if [ $((waited % 30)) -eq 0 ]; then
    echo "waiting for the controller to render the Postfix configuration into $committed"
  fi
  sleep 1
  waited=$((waited + 1))
done
# Start on the committed release, whatever this container ran before a restart: a
# release that made Postfix exit (and so restarted it) is never the committed one.
echo "starting on release $(mailyard-activate)"

# Queue directories live in a volume that may be new or come from an older image:
# let Postfix create missing ones and fix ownership (the config volume is read-only).
postfix post-install create-missing || echo "warning: postfix post-install create-missing failed; see above" >&2
chown -R postfix:postdrop /var/spool/postfix/maildrop /var/spool/postfix/public 2>/dev/null || true
chown -R postfix /var/lib/postfix

# Postfix's resolver needs the container's resolv.conf; nothing runs chrooted (the
# container is the jail), so no copies into the spool directory are needed.
exec postfix start-fg
