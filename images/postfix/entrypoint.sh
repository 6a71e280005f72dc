#!/bin/bash
# Runs Postfix in the foreground once the controller has rendered a release.
set -euo pipefail

echo "starting on release $(mailyard-await-release main.cf master.cf)"

# Queue directories live in a volume that may be new or come from an older image:
# let Postfix create missing ones and fix ownership (the config volume is read-only).
postfix post-install create-missing || echo "warning: postfix post-install create-missing failed; see above" >&2
chown -R postfix:postdrop /var/spool/postfix/maildrop /var/spool/postfix/public 2>/dev/null || true
chown -R postfix /var/lib/postfix

# Postfix's resolver needs the container's resolv.conf; nothing runs chrooted (the
# container is the jail), so no copies into the spool directory are needed.
exec postfix start-fg
