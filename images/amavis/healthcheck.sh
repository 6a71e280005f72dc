#!/bin/bash
# Healthy when amavisd answers SMTP on the inbound port as Postfix's content filter
# client sees it: a 220 banner, then 250 to EHLO.
# With MAILYARD_FILTER=off the container idles on purpose: healthy.
set -euo pipefail
if [ "${MAILYARD_FILTER:-full}" = off ]; then
  echo "idle: MAILYARD_FILTER=off routes no mail through Amavis"
  exit 0
fi
port=${1:-10024}
# Where Postfix reaches it (images/common/bind-names.sh).
exec 3<>"/dev/tcp/amavis-filter/$port" || { echo "amavis: port $port closed"; exit 1; }
IFS= read -r -t 8 line <&3 || true
[[ $line == 220* ]] || { echo "amavis: no 220 banner on $port: ${line:-nothing}"; exit 1; }
printf 'EHLO healthcheck.invalid\r\n' >&3
ok=
while IFS= read -r -t 8 line <&3; do
  [[ $line == "250 "* ]] && { ok=1; break; }
  [[ $line == 250-* ]] || break
done
printf 'QUIT\r\n' >&3
exec 3>&-
[ -n "$ok" ] || { echo "amavis: EHLO failed on $port: ${line:-nothing}"; exit 1; }
echo "amavis: SMTP on $port answers"
