#!/bin/bash
# Healthy when clamd answers PING with PONG on its TCP port (what Amavis uses).
# With MAILYARD_FILTER off or no-clamav the container idles on purpose: healthy.
set -euo pipefail
case ${MAILYARD_FILTER:-full} in
  off|no-clamav) echo "idle: MAILYARD_FILTER=$MAILYARD_FILTER needs no clamd"; exit 0 ;;
esac
# Until clamd listens, the entrypoint says why (no signatures, freshclam's error).
if ! { exec 3<>/dev/tcp/clamav-scan/3310; } 2>/dev/null; then
  cat /run/clamav/signatures-status 2>/dev/null || echo "clamd does not listen on port 3310"
  exit 1
fi
printf 'zPING\0' >&3
IFS= read -r -d '' -t 5 reply <&3 || true
exec 3>&-
[[ $reply == PONG ]] || { echo "clamd: no PONG: ${reply:-nothing}"; exit 1; }
echo "clamd: PONG"
