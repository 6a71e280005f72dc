#!/bin/bash
# Updates SpamAssassin's rules with sa-update and makes amavisd use them.
#   mailyard-sa-update           once
#   mailyard-sa-update --daily   now, then every 24 hours (started by the entrypoint)
# Never fails hard: an offline host keeps the rules it has (the image's, or earlier
# updates in /var/lib/spamassassin).
set -uo pipefail

update_once() {
  local status
  timeout 600 sa-update >/tmp/sa-update.log 2>&1
  status=$?
  case $status in
    0)
      echo "sa-update: new SpamAssassin rules installed; reloading amavisd"
      mailyard-amavis-reload || echo "sa-update: the reload failed; the new rules apply at the next start"
      ;;
    1) echo "sa-update: SpamAssassin rules are up to date" ;;
    *) echo "sa-update: no update (exit $status, offline?): $(tail -n 2 /tmp/sa-update.log | tr '\n' ' ')" ;;
  esac
}

if [ "${1:-}" = --daily ]; then
  sleep 30  # let amavisd start first
  while true; do
    update_once
    sleep 86400
  done
else
  update_once
fi
