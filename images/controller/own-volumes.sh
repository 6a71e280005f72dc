#!/bin/bash
# Hands the controller's volumes to its user (uid 990), keeping each file's group and
# mode: the groups are what the services read by (e.g. postfix for SQL maps). Run as root
# by the one-shot controller-init service before the controller starts; idempotent, and
# quick (these volumes hold configuration, certificates and keys, not mail).
set -euo pipefail
user=990:990
for dir in /var/lib/mailyard /etc/mailyard/certs /var/lib/mailyard-dkim; do
  [ -d "$dir" ] || continue
  # Only what is not ours yet; -h: a symlink (`current`, `active`) itself, not its target.
  find "$dir" ! -user 990 -exec chown -h 990 {} +
  # The volume roots (and their first level) are the controller's own.
  chown "$user" "$dir"
done
echo "the controller's volumes belong to uid 990"
