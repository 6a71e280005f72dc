#!/bin/bash
# Healthy when a request through HAProxy reaches Docker (GET /_ping answers OK).
set -euo pipefail
reply=$(curl -sS --max-time 4 http://127.0.0.1:2375/_ping)
[ "$reply" = OK ] || { echo "no OK from Docker through HAProxy: ${reply:-nothing}"; exit 1; }
