#!/bin/bash
# Makes the running Postfix and its helpers use the release now at /etc/mailyard/active.
# `postfix reload` is graceful (sessions in progress finish on the old configuration).
# policyd-rate-limit reads its file once, at start: when its file changed, it is stopped
# and the entrypoint starts it again at once on the new file. While it restarts (well
# under a second) smtpd retries the policy service after smtpd_policy_service_retry_delay
# and, failing that, answers 4xx (smtpd_policy_service_default_action): nothing is lost.
# The sender milter has nothing to reload: it asks Postfix's own map on every message.
set -euo pipefail
active=/etc/mailyard/active
postfix reload

config=$active/policyd-rate-limit.yaml
running=/run/policyd-rate-limit/started-with.yaml
pid_file=/run/policyd-rate-limit/policyd-rate-limit.pid
socket=/var/spool/postfix/ratelimit/policy
answers() {  # as smtpd would connect: as the postfix user
  setpriv --reuid=postfix --regid=postfix --init-groups python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(3)
s.connect(sys.argv[1])' "$socket" 2>/dev/null
}
if [ -f "$config" ] && ! cmp -s "$config" "$running" 2>/dev/null; then
  if pid=$(cat "$pid_file" 2>/dev/null) && kill "$pid" 2>/dev/null; then
    # Back when it runs under a new pid on the new file and answers (the entrypoint
    # starts it again within a second or two).
    for _ in $(seq 1 100); do
      sleep 0.1
      new_pid=$(cat "$pid_file" 2>/dev/null) || continue
      if [ "$new_pid" != "$pid" ] && cmp -s "$config" "$running" && answers; then
        echo "policyd-rate-limit restarted on the new limits"
        exit 0
      fi
    done
    echo "policyd-rate-limit did not come back within 10 s on the new limits"
    exit 1
  fi
fi
