#!/bin/bash
# Maps network aliases of this container to its own address on their network, so that a
# daemon told to listen on such a name binds to that one network and nothing else.
#   mailyard-bind-names [--cidr DIR] NAME...
#
# Each compose network carries one audience (compose.yaml, docs/security.md), and each
# internal listener's service has an alias on the network of its audience only, e.g.
# `dovecot-delivery` on `delivery` (Postfix and Dovecot). Docker's DNS answers that alias
# with the address of every replica on that network; this container's own one is the
# address it holds itself. It goes into /etc/hosts under the alias: daemons here resolve
# it to their own address (listen/bind), while every other container still gets all
# replicas from Docker's DNS. Health checks connect to the alias too.
# --cidr DIR also writes DIR/NAME.cidr: "<network>/<length> OK", the network itself, as a
# Postfix cidr table (mynetworks of a listener that only that network may use).
set -euo pipefail

cidr_dir=
if [ "${1:-}" = --cidr ]; then
  cidr_dir=${2:?--cidr needs a directory}
  shift 2
fi
[ $# -gt 0 ] || { echo "usage: mailyard-bind-names [--cidr DIR] NAME..." >&2; exit 2; }

tag="# mailyard-bind-names"
own=" $(hostname -I) "

# Earlier lines of ours (a restart keeps /etc/hosts) would shadow Docker's answer.
kept=$(grep -v -- "$tag\$" /etc/hosts || true)
printf '%s\n' "$kept" >/etc/hosts

ipv4_to_int() {
  local IFS=. a b c d
  read -r a b c d <<<"$1"
  echo $(((a << 24) | (b << 16) | (c << 8) | d))
}

# /proc/net/route holds addresses as little-endian hex.
route_hex_to_int() {
  local h=$1
  echo $(((16#${h:6:2} << 24) | (16#${h:4:2} << 16) | (16#${h:2:2} << 8) | 16#${h:0:2}))
}

int_to_ipv4() {
  echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"
}

# The directly connected network holding ADDRESS, as network/length.
network_of() {
  local address iface destination gateway mask ones m
  address=$(ipv4_to_int "$1")
  while read -r iface destination gateway _ _ _ _ mask _; do
    [ "$iface" = Iface ] && continue
    [ "$gateway" = 00000000 ] || continue
    m=$(route_hex_to_int "$mask")
    ((m != 0)) || continue
    if (((address & m) == $(route_hex_to_int "$destination"))); then
      ones=0
      while ((m & 0xFFFFFFFF)); do
        ones=$((ones + (m & 1)))
        m=$((m >> 1))
      done
      echo "$(int_to_ipv4 "$(route_hex_to_int "$destination")")/$ones"
      return 0
    fi
  done </proc/net/route
  return 1
}

for name in "$@"; do
  [[ $name =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] || { echo "not an alias: ${name@Q}" >&2; exit 2; }
  address=
  for waited in $(seq 0 60); do
    for candidate in $(getent ahostsv4 "$name" | awk '{ print $1 }' | sort -u); do
      if [[ $own == *" $candidate "* ]]; then
        address=$candidate
        break 2
      fi
    done
    [ $((waited % 10)) -eq 0 ] && echo "waiting for Docker's DNS to name this container $name" >&2
    sleep 1
  done
  if [ -z "$address" ]; then
    echo "this container has no address named $name (is it on that network in compose.yaml?)" >&2
    exit 1
  fi
  printf '%s\t%s\t%s\n' "$address" "$name" "$tag" >>/etc/hosts
  if [ -n "$cidr_dir" ]; then
    network=$(network_of "$address") || { echo "no route for $address" >&2; exit 1; }
    mkdir -p "$cidr_dir"
    printf '%s OK\n' "$network" >"$cidr_dir/$name.cidr.tmp"
    mv -f "$cidr_dir/$name.cidr.tmp" "$cidr_dir/$name.cidr"
  fi
  echo "listening name $name is $address${cidr_dir:+ on $network}" >&2
done
