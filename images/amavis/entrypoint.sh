#!/bin/bash
# Runs amavisd (with SpamAssassin in process) once the controller has rendered a release.
#   MAILYARD_FILTER=full | no-clamav: run amavisd; off: idle (Postfix routes no mail here).
#   MAILYARD_SA_UPDATE=yes: fetch SpamAssassin rule updates at start and daily, in the
#     background; failures (offline hosts) are logged and never stop the container.
set -euo pipefail

filter=${MAILYARD_FILTER:-full}
case $filter in
  full|no-clamav) ;;
  off)
    echo "MAILYARD_FILTER=off: no content filter wanted; amavisd is not started"
    exec sleep infinity ;;
  *) echo "MAILYARD_FILTER must be full, no-clamav or off, not '$filter'" >&2; exit 2 ;;
esac

# Postfix's mail (10024, 10026) on the `filter` network, quarantine releases (9998) on
# `control`; amavisd.conf reads the networks' .cidr files for its access lists.
mailyard-bind-names --cidr /run/mailyard/networks amavis-filter amavis-control

echo "starting on release $(mailyard-await-release amavisd.conf)"

# The state volume may be new (owned by root).
install -d -o amavis -g amavis -m 0750 /var/lib/amavis /var/lib/amavis/tmp \
  /var/lib/amavis/db /var/lib/amavis/var
install -d -o amavis -g amavis -m 0755 /run/amavis
rm -f /run/amavis/amavisd.pid /run/amavis/amavisd.lock
# Leftovers of a killed child would only fill the disk.
find /var/lib/amavis/tmp -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null || true

if [ "${MAILYARD_SA_UPDATE:-yes}" = yes ]; then
  # Detached (parent: tini, not amavisd, which must only see its own children).
  (mailyard-sa-update --daily </dev/null &)
else
  echo "MAILYARD_SA_UPDATE=${MAILYARD_SA_UPDATE}: using the SpamAssassin rules of the image"
fi

# The link, not its target: a reload (SIGHUP) re-reads whatever release is active then.
# -X no_conf_file_writable_check: amavisd wants its configuration (Perl, run as root)
# owned by root, against local users editing it. The file belongs to the controller's
# user (uid 990, another container), on a volume mounted read-only here: nobody in this
# container can change it. The re-exec on SIGHUP keeps the option.
exec amavisd -X no_conf_file_writable_check -c /etc/mailyard/active/amavisd.conf foreground
