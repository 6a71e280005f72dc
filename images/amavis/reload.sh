#!/bin/bash
# Makes the running amavisd use the release now at /etc/mailyard/active, without a
# container restart. `amavisd reload` sends SIGHUP; amavisd first re-reads the
# configuration as user amavis (a file it cannot use is refused: the old one keeps
# running and this command fails), then re-executes itself, keeping its listening
# sockets, and forks new children. Returns once the new children answer SMTP.
set -euo pipefail
config=/etc/mailyard/active/amavisd.conf
pid_file=/run/amavis/amavisd.pid
[ -f "$config" ] || { echo "no active release at $config"; exit 1; }
master=$(cat "$pid_file" 2>/dev/null) || { echo "amavisd is not running (no $pid_file)"; exit 1; }

children() {  # the current children of the amavisd master process
  local stat line rest
  for stat in /proc/[0-9]*/stat; do
    IFS= read -r line <"$stat" 2>/dev/null || continue
    rest=${line##*) }            # after "pid (comm) ": comm may hold spaces
    read -r _state ppid _ <<<"$rest"
    [ "$ppid" = "$master" ] && echo "${line%% *}"
  done
  return 0
}
old=$(children | sort)

amavisd -X no_conf_file_writable_check -c "$config" reload

for _ in $(seq 1 90); do
  sleep 1
  kill -0 "$master" 2>/dev/null || { echo "amavisd exited during the reload"; exit 1; }
  now=$(children | sort)
  # Old children still there: the new configuration was refused or is loading.
  if [ -n "$old" ] && [ -n "$(comm -12 <(echo "$old") <(echo "$now"))" ]; then
    continue
  fi
  if [ -n "$now" ] && mailyard-amavis-healthcheck >/dev/null 2>&1; then
    echo "amavisd reloaded on $(basename "$(readlink -f /etc/mailyard/active)")"
    exit 0
  fi
done
echo "amavisd did not come back within 90 s (refused configuration? see its log)"
exit 1
