#!/bin/bash
# Healthy when the server answers a real query for its own record over UDP.
set -euo pipefail
drill -Q @127.0.0.1 health.dns.test A | grep -qx 127.0.0.1
