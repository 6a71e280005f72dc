#!/bin/bash
# Healthy when postgrey answers a Postfix policy request (RCPT stage) with an action.
# The client is 240.0.0.1 (reserved, never a real client), so the one database entry
# this makes can never greylist or whitelist anybody else.
set -euo pipefail
exec 3<>/dev/tcp/postgrey-greylist/10023
printf '%s\n' request=smtpd_access_policy protocol_state=RCPT protocol_name=ESMTP \
  client_address=240.0.0.1 client_name=unknown helo_name=healthcheck.mailyard.invalid \
  sender=healthcheck@mailyard.invalid recipient=healthcheck@mailyard.invalid \
  instance=healthcheck '' >&3
IFS= read -r -t 5 reply <&3 || { echo "postgrey: no reply"; exit 1; }
[[ $reply == action=* ]] || { echo "postgrey: unexpected reply: $reply"; exit 1; }
exec 3>&-
