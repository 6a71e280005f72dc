#!/bin/bash
# Runs Postfix once the controller has rendered a release, and stops it without
# delivering anything twice.
set -euo pipefail

# Re-injection from Amavis (10025), list mail from Mailman (10027) and the web
# interface's mail (10028) listen on the network of their one client each, and trust
# that network only (master.cf reads the .cidr tables written here).
mailyard-bind-names --cidr /run/mailyard/networks postfix-filter postfix-lists postfix-webmail

echo "starting on release $(mailyard-await-release main.cf master.cf)"

# Queue directories live in a volume that may be new or come from an older image:
# let Postfix create missing ones and fix ownership (the config volume is read-only).
postfix post-install create-missing || echo "warning: postfix post-install create-missing failed; see above" >&2
chown -R postfix:postdrop /var/spool/postfix/maildrop /var/spool/postfix/public 2>/dev/null || true
chown -R postfix /var/lib/postfix

# How long a stop waits for deliveries in progress; compose gives the container 30 s
# (stop_grace_period) before it kills everything.
drain_seconds=${MAILYARD_POSTFIX_DRAIN_SECONDS:-20}
# Remote ports Postfix connects to that are not deliveries: MariaDB (proxymap),
# postgrey, Dovecot's quota status and SASL services, the OpenDKIM milters, DNS.
not_delivery_ports=" 3306 10023 12340 12345 8891 8892 53 "
postfix_uid=$(id -u postfix)

# Deliveries in progress: connections that Postfix (uid postfix) opened to anything but
# the services above. A delivery agent records the result in the queue file when the
# server replies, before it closes the connection or hands it to the connection cache
# (scache keeps it at most 2 s). Reads /proc/net/tcp{,6}: the image has no ss, and
# without CAP_SYS_PTRACE root cannot inspect another user's sockets or syscalls.
deliveries_in_progress() {
  local first_ephemeral tables=(/proc/net/tcp)
  read -r first_ephemeral _ </proc/sys/net/ipv4/ip_local_port_range
  [[ -r /proc/net/tcp6 ]] && tables+=(/proc/net/tcp6) # absent when IPv6 is off
  awk -v uid="$postfix_uid" -v first="$first_ephemeral" -v skip="$not_delivery_ports" '
    function hex(text,   value, i) {
      value = 0
      for (i = 1; i <= length(text); i++)
        value = value * 16 + index("0123456789ABCDEF", toupper(substr(text, i, 1))) - 1
      return value
    }
    # Fields: sl local_address rem_address st ... uid; state 01 is ESTABLISHED.
    FNR > 1 && $4 == "01" && $8 == uid {
      local_port = hex(substr($2, index($2, ":") + 1))
      remote_port = hex(substr($3, index($3, ":") + 1))
      if (local_port >= first && index(skip, " " remote_port " ") == 0) busy++
    }
    END { print busy + 0 }
  ' "${tables[@]}"
}

# Sends signal $1 to every process whose command name is $2 (the image has no procps).
signal_all() {
  local comm_file comm
  for comm_file in /proc/[0-9]*/comm; do
    { read -r comm <"$comm_file"; } 2>/dev/null || continue
    [[ $comm == "$2" ]] && kill "-$1" "${comm_file//[^0-9]/}" 2>/dev/null
  done
  return 0
}

# `postfix stop` makes master SIGTERM every child at once. A delivery agent killed
# after Dovecot (or a remote server) said 250 but before it recorded that in the queue
# file makes the message go out again after the restart: a duplicate. So first stop the
# queue manager (no new deliveries start), let the deliveries in progress record their
# result, and only then stop Postfix. Mail that arrives meanwhile is queued as usual.
stop_gracefully() {
  trap '' TERM INT
  local started=$SECONDS idle=0
  kill "$sql_watch_pid" 2>/dev/null || true # no reload in the middle of a stop
  echo "stopping: pausing the queue manager and waiting up to ${drain_seconds}s for deliveries in progress"
  signal_all STOP qmgr
  while ((SECONDS - started < drain_seconds)); do
    if [[ $(deliveries_in_progress) == 0 ]]; then
      # Twice in a row: a delivery may be between two connections (the next MX).
      idle=$((idle + 1))
      ((idle >= 2)) && break
    else
      idle=0
    fi
    sleep 0.1
  done
  echo "stopping: $(deliveries_in_progress) deliveries still in progress after $((SECONDS - started))s"
  postfix stop || true
  # The paused queue manager got its SIGTERM with everyone else; let it act on it.
  signal_all CONT qmgr
}

# Not exec: this shell catches `docker stop`'s SIGTERM (tini, PID 1, forwards it);
# `postfix start-fg` runs master in the foreground as its child.
postfix start-fg &
postfix_pid=$!
mailyard-postfix-sql-watch &
sql_watch_pid=$!
trap stop_gracefully TERM INT
# `wait` returns early when the trap runs; wait again until master is gone, then
# take its exit status.
while kill -0 "$postfix_pid" 2>/dev/null; do
  wait "$postfix_pid" || true
done
wait "$postfix_pid" && status=0 || status=$?
exit "$status"
