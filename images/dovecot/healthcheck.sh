#!/bin/bash
# Healthy when IMAP answers CAPABILITY and LMTP answers LHLO: the two protocols the
# rest of the stack depends on.
set -euo pipefail

exec 3<>/dev/tcp/127.0.0.1/143
IFS= read -r -t 5 line <&3
[[ $line == "* OK"* ]] || { echo "imap: no greeting: $line"; exit 1; }
printf 'h1 CAPABILITY\r\n' >&3
ok=
while IFS= read -r -t 5 line <&3; do
  [[ $line == "h1 OK"* ]] && { ok=1; break; }
done
[ -n "$ok" ] || { echo "imap: CAPABILITY failed"; exit 1; }
printf 'h2 LOGOUT\r\n' >&3
exec 3>&-

# LMTP listens where Postfix reaches it only (images/common/bind-names.sh).
exec 4<>/dev/tcp/dovecot-delivery/24
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
