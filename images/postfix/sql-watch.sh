#!/bin/bash
# Runs beside Postfix (started by the entrypoint). When MariaDB comes back after an
# outage, reloads Postfix so that lookups work again at once.
#
# Why: each proxymap process that saw a query fail marks the database down for 60 s
# (fixed in Postfix 3.7's mysql client), and the processes learn of the outage one by
# one, so after MariaDB returns some lookups keep failing (451 to senders) for a minute
# or more. `postfix reload` replaces them gracefully, like any configuration reload.
set -uo pipefail

interval=${MAILYARD_SQL_WATCH_INTERVAL:-2}
# A fresh postmap process each time, straight to MySQL (not through proxymap), so the
# probe has no memory of earlier failures.
probe_map() {
  local map
  map=$(postconf -h virtual_mailbox_domains 2>/dev/null) || return 1
  map=${map#proxy:}
  map=${map//\$config_directory/$(postconf -h config_directory)}
  echo "$map"
}

database_answers() {
  local map=$1 output
  # "Not found" (exit 1, no message) is an answer; a warning or fatal error is not.
  output=$(postmap -q "sql-watch.mailyard.invalid" "$map" 2>&1 >/dev/null)
  [[ $output != *warning:* && $output != *fatal:* ]]
}

was_down=0
while sleep "$interval"; do
  map=$(probe_map) || continue
  if database_answers "$map"; then
    if ((was_down)); then
      echo "sql-watch: the database answers again; reloading Postfix so lookups resume now"
      postfix reload || echo "sql-watch: postfix reload failed" >&2
      was_down=0
    fi
  elif ((!was_down)); then
    echo "sql-watch: the database does not answer; mail gets 4xx until it does"
    was_down=1
  fi
done
