#!/bin/bash
# Restarts postgrey inside this container with the options of the release that
# /etc/mailyard/active points at now (the controller runs it after mailyard-activate).
# Postgrey reads its options only at start. Waits until the new process answers; exit 1
# (with the reason) if it does not within 15 s.
set -euo pipefail
supervisor=$(cat /run/mailyard-postgrey-supervisor.pid)
old=$(cat /run/mailyard-postgrey.pid 2>/dev/null || true)
kill -USR1 "$supervisor"
for _ in $(seq 150); do
  new=$(cat /run/mailyard-postgrey.pid 2>/dev/null || true)
  if [ -n "$new" ] && [ "$new" != "$old" ] && kill -0 "$new" 2>/dev/null \
    && mailyard-postgrey-healthcheck >/dev/null 2>&1; then
    echo "postgrey restarted (pid $new)"
    exit 0
  fi
  sleep 0.1
done
echo "postgrey did not come back within 15 s after the restart; see the container log"
exit 1
