#!/bin/bash
# Healthy when clamd answers PING with PONG on its TCP port (what Amavis uses).
# With MAILYARD_FILTER off or no-clamav the container idles on purpose: healthy.
set -euo pipefail
case ${MAILYARD_FILTER:-full} in
  off|no-clamav) echo "idle: MAILYARD_FILTER=$MAILYARD_FILTER needs no clamd"; exit 0 ;;
esac
exec 3<>/dev/tcp/clamav-scan/3310 || { echo "clamd: port 3310 closed"; exit 1; }
printf 'zPING\0' >&3
IFS= read -r -d '' -t 5 reply <&3 || true
exec 3>&-
[[ $reply == PONG ]] || { echo "clamd: no PONG: ${reply:-nothing}"; exit 1; }
echo "clamd: PONG"
