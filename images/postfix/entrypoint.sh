#!/bin/bash
# Runs Postfix once the controller has rendered a release, and stops it without
# delivering anything twice.
set -euo pipefail

# Re-injection from Amavis (10025), list mail from Mailman (10027) and the web
# interface's mail (10028) listen on the network of their one client each, and trust
# that network only (master.cf reads the .cidr tables written here). postfix-edge is
# where Docker forwards the published ports; the health check looks for them there.
mailyard-bind-names --cidr /run/mailyard/networks postfix-filter postfix-lists postfix-webmail \
  postfix-edge

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
  # smtpd has stopped: its helpers may go now.
  kill "$milter_pid" "$rate_limit_pid" "$rate_clean_pid" 2>/dev/null || true
}

# Helpers that smtpd asks on 587/465, started before Postfix so that the first session
# finds them; each is restarted when it exits. While one is down, Postfix answers 4xx
# (milter_default_action = tempfail; smtpd_policy_service_default_action), never 5xx.
#   sender-milter: the header From/Sender must belong to the login (images/postfix/
#     sender_milter.py), on a unix socket only, as the postfix user: it asks
#     smtpd_sender_login_maps through proxymap, whose socket only postfix may use.
#   policyd-rate-limit (Debian): the per-login outbound limit, unix socket in the spool,
#     counts in sqlite in this container. With several Postfix replicas each one counts
#     on its own, so a login may send up to the limit once per replica.
milter_dir=/run/mailyard-milter
install -d -o postfix -g postfix -m 0750 "$milter_dir"
rate_limit_config=/etc/mailyard/active/policyd-rate-limit.yaml
# policyd-rate-limit hands an empty socket directory to its own user and group: 0711 lets
# smtpd reach the socket (0666) without listing the directory.
install -d -o policyd-rate-limit -g policyd-rate-limit -m 0711 /var/spool/postfix/ratelimit
install -d -o policyd-rate-limit -g policyd-rate-limit -m 0700 /var/lib/policyd-rate-limit
install -d -o policyd-rate-limit -g policyd-rate-limit -m 0755 /run/policyd-rate-limit

# Runs "$@" again and again (1 s apart) until this function's shell gets SIGTERM.
keep_running() {
  local name=$1 child status
  shift
  trap 'kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM
  while :; do
    "$@" &
    child=$!
    wait "$child" && status=0 || status=$?
    echo "$name exited with status $status; starting it again" >&2
    sleep 1
  done
}
keep_running sender-milter setpriv --reuid=postfix --regid=postfix --init-groups \
  python3 /usr/local/lib/mailyard/sender_milter.py "$milter_dir/sender.sock" &
milter_pid=$!
# Started as root: it makes its directories, then drops to its own user.
start_rate_limit() {
  if [[ ! -f $rate_limit_config ]]; then
    echo "no $rate_limit_config in the active release yet" >&2
    sleep 5
    return 1
  fi
  # What it started with, so that mailyard-postfix-reload knows when to restart it.
  cp "$rate_limit_config" /run/policyd-rate-limit/started-with.yaml
  rm -f /run/policyd-rate-limit/policyd-rate-limit.pid
  exec policyd-rate-limit -f "$rate_limit_config"
}
keep_running policyd-rate-limit start_rate_limit &
rate_limit_pid=$!
# Its records are one row per recipient: drop those older than twice the window every
# hour (what Debian's cron.daily job does, more often; a container has no cron).
( trap 'exit 0' TERM; while sleep 3600 & wait $!; do
    policyd-rate-limit -f "$rate_limit_config" --clean >/dev/null || echo "policyd-rate-limit --clean failed" >&2
  done ) &
rate_clean_pid=$!

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
