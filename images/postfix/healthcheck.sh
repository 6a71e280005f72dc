#!/bin/bash
# Healthy when SMTP answers at protocol level on 25 (through postscreen) and on the
# submission port: a 220 banner, then a 250 reply to EHLO; and when the helpers that
# submission asks (the sender milter, the outbound rate limit) accept connections on
# their unix sockets: without them every submitted message gets 4xx.
set -euo pipefail

# Where a master.cf service listens: its own address when smtp_listen_address gives one
# ("192.0.2.10:smtp"), else every address, so loopback.
listen_address() {
  local field
  field=$(postconf -M 2>/dev/null | awk -v name="$1" '$2 == "inet" && ($1 == name || $1 ~ (":" name "$")) { print $1; exit }')
  if [[ $field == *:* ]]; then echo "${field%:*}"; else echo 127.0.0.1; fi
}

smtp_ehlo() {
  local port=$1 address line
  address=$(listen_address "$2")
  exec 3<>"/dev/tcp/$address/$port"
  # The whole greeting before EHLO: from an address outside mynetworks (a listen address
  # of the container's own), postscreen first sends "220-" and treats a client that talks
  # before the final "220 " as a spammer (pregreet).
  while IFS= read -r -t 10 line <&3; do
    [[ $line == 220-* ]] && continue
    break
  done
  [[ $line == "220 "* ]] || { echo "port $port: no 220 banner: ${line:-nothing}"; return 1; }
  printf 'EHLO healthcheck.invalid\r\n' >&3
  while IFS= read -r -t 5 line <&3; do
    [[ $line == 250-* ]] && continue
    [[ $line == 250\ * ]] && break
    echo "port $port: EHLO refused: $line"; return 1
  done
  [[ $line == 250\ * ]] || { echo "port $port: no EHLO reply"; return 1; }
  printf 'QUIT\r\n' >&3
  exec 3>&-
}

smtp_ehlo 25 smtp
smtp_ehlo 587 submission

# The published ports must listen where Docker forwards them: this container's address
# on the edge network (postfix-edge), or every address. A listen address elsewhere
# (loopback, an internal network) passes the checks above and still cuts off the world.
edge=$(getent ahostsv4 postfix-edge | awk '{ print $1; exit }')
python3 - "$edge" 25 465 587 <<'PY' || exit 1
import socket
import struct
import sys

edge, ports = sys.argv[1], [int(port) for port in sys.argv[2:]]
listening = set()
with open("/proc/net/tcp") as table:
    for row in table.read().splitlines()[1:]:
        fields = row.split()
        if fields[3] != "0A":  # LISTEN
            continue
        address, port = fields[1].split(":")
        listening.add((socket.inet_ntoa(struct.pack("<I", int(address, 16))), int(port, 16)))
closed = [p for p in ports if (edge, p) not in listening and ("0.0.0.0", p) not in listening]
if closed:
    print(f"port {', '.join(map(str, closed))} does not listen on {edge}, the edge address "
          "where the published ports arrive: mail from outside cannot reach Postfix")
    sys.exit(1)
PY

# As the postfix user, like smtpd: a socket root can reach may still be closed to it.
unix_socket_answers() {
  setpriv --reuid=postfix --regid=postfix --init-groups python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(3)
s.connect(sys.argv[1])' "$1" 2>/dev/null || { echo "nothing accepts connections on $1"; return 1; }
}
unix_socket_answers /run/mailyard-milter/sender.sock
unix_socket_answers /var/spool/postfix/ratelimit/policy
