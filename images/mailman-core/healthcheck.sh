#!/bin/bash
# Healthy when the REST API answers an authenticated GET /3.1/system/versions with 200
# (proves gunicorn, the REST runner, the credentials and the database behind them) and the
# LMTP runner answers its banner and LHLO: the two things the controller and Postfix use.
set -euo pipefail

cfg=/etc/mailman3/mailman.cfg
value() { sed -n "/^\[webservice\]/,/^\[/{s/^$1: *//p}" "$cfg" | head -n 1; }
auth=$(printf '%s:%s' "$(value admin_user)" "$(value admin_pass)" | base64 -w0)

exec 3<>/dev/tcp/mailman-rest/8001
printf 'GET /3.1/system/versions HTTP/1.0\r\nHost: localhost\r\nAuthorization: Basic %s\r\n\r\n' \
  "$auth" >&3
IFS= read -r -t 5 status <&3 || true
exec 3>&-
[[ $status == "HTTP/1."?" 200"* ]] || { echo "rest: ${status:-no answer}"; exit 1; }

exec 4<>/dev/tcp/mailman-lists/8024
IFS= read -r -t 5 line <&4
[[ $line == 220* ]] || { echo "lmtp: no banner: $line"; exit 1; }
printf 'LHLO healthcheck.invalid\r\n' >&4
ok=
while IFS= read -r -t 5 line <&4; do
  [[ $line == "250 "* ]] && { ok=1; break; }
  [[ $line == 250-* ]] || break
done
[ -n "$ok" ] || { echo "lmtp: LHLO failed"; exit 1; }
printf 'QUIT\r\n' >&4
exec 4>&-
