#!/bin/bash
# Makes both running OpenDKIM instances re-read their configuration file (the
# container's `active` release) without a restart: SIGUSR1 (opendkim(8)). Messages in
# progress finish with the old settings.
set -euo pipefail
for name in opendkim opendkim-ed25519; do
  kill -USR1 "$(cat "/run/opendkim/$name.pid")"
done
