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
if [ -f "$config" ] && ! cmp -s "$config" "$running" 2>/dev/null; then
  if pid=$(cat "$pid_file" 2>/dev/null) && kill "$pid" 2>/dev/null; then
    echo "policyd-rate-limit restarted on the new limits"
  fi
fi
