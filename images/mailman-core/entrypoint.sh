#!/bin/bash
# Starts Mailman 3 core for Mailyard.
#
# Runs as root only to prepare: renders /etc/mailman3/mailman.cfg from the environment and
# the secrets volume, waits for the database, then runs Mailman's master watcher as
# `list`, in the foreground, as a child of this script (tini is PID 1). `mailman start`
# is not used: it double-forks the master away and returns. The master handles SIGTERM
# by stopping every runner and waiting for them; this script forwards TERM/INT to it.
set -euo pipefail

secrets_dir=${MAILYARD_SECRETS_DIR:-/var/lib/mailyard-secrets}
export MAILYARD_SECRETS_DIR=$secrets_dir
var_dir=/var/lib/mailman3

# The database password comes from the db service (it creates the user with it). The REST
# password normally does too; if it is missing and the directory is writable (e.g. a
# stand-alone test), it is generated here.
rest_file=$secrets_dir/mailman-rest-password
if [ ! -s "$rest_file" ]; then
  if [ -w "$secrets_dir" ]; then
    umask 077
    random=$(head -c 1024 /dev/urandom | tr -dc 'A-Za-z0-9')
    [ ${#random} -ge 32 ] || { echo "could not generate a password" >&2; exit 1; }
    printf '%s' "${random:0:32}" >"$rest_file.tmp"
    mv "$rest_file.tmp" "$rest_file"
    umask 022
    echo "generated the Mailman REST API password (stored in the secrets volume)"
  else
    echo "missing $rest_file (and $secrets_dir is read-only)" >&2
    exit 1
  fi
fi
for _ in $(seq 1 60); do
  [ -s "$secrets_dir/db-mailman-password" ] && break
  echo "waiting for $secrets_dir/db-mailman-password"
  sleep 2
done

# LMTP (8024) on the `lists` network (Postfix), REST (8001) on `mailman` (the
# controller and the web interface): mailman.cfg names these addresses.
mailyard-bind-names mailman-lists mailman-rest

mailyard-mailman-render-config

# Locks and the PID file belong to this run only. /run is not a tmpfs in a container: after
# a `docker kill` they would survive into the next `docker start`, where the new master
# may get the very PID the stale lock names and refuse to start.
rm -rf /run/mailman3/locks /run/mailman3/master.pid
# The state volume may be new (owned by root).
mkdir -p /run/mailman3/locks
chown list:list "$var_dir" /run/mailman3 /run/mailman3/locks
chmod 0750 "$var_dir"

as_list() { setpriv --reuid=list --regid=list --init-groups "$@"; }

# Mailman's loggers open their path themselves (/dev/stdout, see render-config). Docker's
# output pipes belong to root and are mode 0600: hand them to `list` so the master and the
# runners it forks can open them and everything reaches `docker logs`.
chown list:list /proc/self/fd/1 /proc/self/fd/2
as_list sh -c ': >>/dev/stdout' || { echo "list cannot write to /dev/stdout" >&2; exit 1; }

# Wait until Mailman's database account works (the db service creates it at its start).
waited=0
until as_list python3 - <<'PY' 2>/tmp/db-error
import configparser
from sqlalchemy import create_engine, text
cfg = configparser.ConfigParser(interpolation=None, strict=False)
cfg.read('/etc/mailman3/mailman.cfg')
with create_engine(cfg['database']['url']).connect() as c:
    c.execute(text('SELECT 1'))
PY
do
  if [ $waited -ge 120 ]; then
    echo "the database is not reachable after ${waited}s:" >&2
    tail -n 1 /tmp/db-error >&2
    exit 1
  fi
  [ $((waited % 10)) -eq 0 ] && echo "waiting for the database: $(tail -n 1 /tmp/db-error)"
  sleep 2
  waited=$((waited + 2))
done
rm -f /tmp/db-error

cd "$var_dir"
export MAILMAN_VAR_DIR=$var_dir
# setpriv execs the master: $! is the master itself (a shell function would add a subshell).
setpriv --reuid=list --regid=list --init-groups \
  /usr/lib/mailman3/bin/master --force -C /etc/mailman3/mailman.cfg &
master_pid=$!

# Daily jobs the Debian package runs from cron: reminders of pending requests to
# moderators and periodic digests. Once a day at MAILYARD_MAILMAN_DAILY_HOUR (UTC).
daily_hour=$(printf '%02d' "$((10#${MAILYARD_MAILMAN_DAILY_HOUR:-8}))")
(
  trap 'exit 0' TERM
  last_day=
  while sleep 60 & wait $!; do
    today=$(date -u +%F)
    if [ "$(date -u +%H)" = "$daily_hour" ] && [ "$today" != "$last_day" ]; then
      last_day=$today
      as_list mailman notify || echo "mailman notify failed"
      as_list mailman digests --periodic || echo "mailman digests failed"
    fi
  done
) &
daily_pid=$!

stop() {
  kill -TERM "$daily_pid" 2>/dev/null || true
  kill -TERM "$master_pid" 2>/dev/null || true
}
trap stop TERM INT
# `wait` also returns when a trapped signal arrives: wait until the master has really gone.
while :; do
  status=0
  wait "$master_pid" || status=$?
  kill -0 "$master_pid" 2>/dev/null || break
done
kill -TERM "$daily_pid" 2>/dev/null || true
echo "Mailman master exited with status $status"
exit "$status"
