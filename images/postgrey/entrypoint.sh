#!/bin/bash
# Runs postgrey in the foreground once the controller has rendered a release, and keeps
# this container up across reloads:
#   mailyard-postgrey-entrypoint              supervise postgrey (the container's command)
#   mailyard-postgrey-entrypoint --check FILE check an args file (mailyard-postgrey-validate)
#
# Postgrey reads its options only when it starts (a HUP re-reads just the whitelists), so
# a reload (mailyard-postgrey-reload, SIGUSR1 to this script) stops postgrey and starts it
# again with the options of the release /etc/mailyard/active points at now. The container
# does not restart, so the controller's gate can tell a reload from a crash. If postgrey
# exits on its own, this script exits with it: the container restarts on the committed
# release, as the other services do.
set -euo pipefail

# The options a release may set: one per line, `--name=value`; blank lines and lines
# starting with # are ignored. Everything else (listen address, database directory,
# user) is fixed here: it is this image's contract, not a setting.
check_args() {
  local file=$1 line name value errors=0 n=0
  ARGS=()
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    [[ -z $line || $line == \#* ]] && continue
    if ! [[ $line =~ ^--([a-z-]+)=(.*)$ ]]; then
      echo "ERROR line $n: not an option of the form --name=value: ${line@Q}"
      errors=1
      continue
    fi
    name=${BASH_REMATCH[1]}
    value=${BASH_REMATCH[2]}
    case $name in
      delay)  # seconds; postgrey treats 0 as "unset" (300)
        range "$n" "$name" "$value" 1 86400 || errors=1 ;;
      max-age)  # days
        range "$n" "$name" "$value" 1 3650 || errors=1 ;;
      retry-window)  # days, or hours with h
        if ! [[ $value =~ ^[1-9][0-9]{0,3}h?$ ]]; then
          echo "ERROR line $n: --retry-window wants days (N) or hours (Nh), got ${value@Q}"
          errors=1
        fi ;;
      auto-whitelist-clients)  # 0 = off
        range "$n" "$name" "$value" 0 1000 || errors=1 ;;
      hostname)  # shown in the X-Greylist header
        if ! [[ $value =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$ ]]; then
          echo "ERROR line $n: --hostname must be a host name, got ${value@Q}"
          errors=1
        fi ;;
      greylist-text)  # postgrey expands %s (seconds left), %r (recipient domain)
        if ! [[ $value =~ ^[A-Za-z0-9\ %.,:\;()/_-]{1,200}$ ]]; then
          echo "ERROR line $n: --greylist-text may hold letters, digits, spaces and .,:;()/_-% only"
          errors=1
        fi ;;
      *)
        echo "ERROR line $n: option --$name is not one a release may set"
        errors=1 ;;
    esac
    ARGS+=("$line")
  done <"$file"
  return $errors
}

range() {
  local n=$1 name=$2 value=$3 low=$4 high=$5
  if ! [[ $value =~ ^(0|[1-9][0-9]{0,9})$ ]] || ((value < low || value > high)); then
    echo "ERROR line $n: --$name must be a whole number from $low to $high, got ${value@Q}"
    return 1
  fi
}

if [ "${1:-}" = --check ]; then
  check_args "${2:?args file}"
  exit $?
fi

# On the `greylist` network only, which only Postfix shares.
mailyard-bind-names postgrey-greylist

echo "starting on release $(mailyard-await-release postgrey.args)"

# The database volume may be new (owned by root).
chown postgrey:postgrey /var/lib/postgrey
chmod 0750 /var/lib/postgrey

SUPERVISOR_PID=/run/mailyard-postgrey-supervisor.pid
CHILD_PID=/run/mailyard-postgrey.pid
echo $$ >"$SUPERVISOR_PID"

child=
restart=
stopping=

start_postgrey() {
  local release
  release=$(basename "$(readlink /etc/mailyard/active)")
  if ! check_args /etc/mailyard/active/postgrey.args; then
    echo "release $release: postgrey.args rejected, see above" >&2
    exit 1
  fi
  echo "postgrey starting on release $release: ${ARGS[*]}"
  postgrey --inet=postgrey-greylist:10023 --dbdir=/var/lib/postgrey --user=postgrey --group=postgrey \
    "${ARGS[@]}" &
  child=$!
  echo "$child" >"$CHILD_PID"
}

stop_postgrey() {
  kill -TERM "$child" 2>/dev/null || true
  # `wait` returns early when a signal arrives; loop until the process is gone.
  while kill -0 "$child" 2>/dev/null; do
    wait "$child" 2>/dev/null || true
  done
}

trap 'restart=1' USR1
trap 'stopping=1' TERM INT

start_postgrey
while true; do
  status=0
  wait "$child" || status=$?
  if [ -n "$stopping" ]; then
    stop_postgrey
    exit 0
  fi
  if [ -n "$restart" ]; then
    restart=
    stop_postgrey
    start_postgrey
    continue
  fi
  if ! kill -0 "$child" 2>/dev/null; then
    echo "postgrey exited with status $status" >&2
    exit "$status"
  fi
done
