#!/bin/bash
# Healthy once the ACME directory answers over HTTPS, verified with the test root, and
# the public PEM files are in place for the controller and the tests.
set -euo pipefail
ca_dir=${PEBBLE_CA_DIR:-/var/lib/pebble-ca}
[[ -s $ca_dir/issuer-root.pem ]]
curl -fsS --max-time 4 --cacert "$ca_dir/ca.pem" https://localhost:14000/dir \
  | grep -q '"newOrder"'
