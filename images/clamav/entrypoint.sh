#!/bin/bash
# Runs clamd (and freshclam) for Mailyard.
#   MAILYARD_FILTER=full (default): clamd on TCP 3310; no-clamav or off: idle.
#   MAILYARD_CLAMAV_OFFLINE_SIGNATURES=DIR: copy the signature files of DIR (a mounted
#     directory) into the database directory instead of running freshclam.
# clamd starts only once a signature database exists: a clamd with no signatures would
# report every message clean.
set -euo pipefail

filter=${MAILYARD_FILTER:-full}
case $filter in
  full) ;;
  no-clamav|off)
    echo "MAILYARD_FILTER=$filter: no virus scanning wanted; clamd is not started"
    exec sleep infinity ;;
  *) echo "MAILYARD_FILTER must be full, no-clamav or off, not '$filter'" >&2; exit 2 ;;
esac

# clamd listens on the `scan` network only, which only Amavis shares (clamd.conf).
mailyard-bind-names clamav-scan

db=/var/lib/clamav
mkdir -p "$db" /run/clamav
chown clamav:clamav "$db" /run/clamav
chmod 0755 "$db"

# Signature file types clamd loads (clamav's docs: "Signature formats").
patterns=(cvd cld cud hdb hsb hdu hsu mdb msb mdu msu ndb ndu ldb ldu idb cdb crb cbc pdb
          gdb wdb fp sfp ign ign2 ftm cfg info yar yara pwdb)
has_database() {
  local ext
  for ext in "${patterns[@]}"; do
    compgen -G "$db/*.$ext" >/dev/null && return 0
  done
  return 1
}

offline=${MAILYARD_CLAMAV_OFFLINE_SIGNATURES:-}
if [ -n "$offline" ]; then
  [ -d "$offline" ] || { echo "MAILYARD_CLAMAV_OFFLINE_SIGNATURES=$offline is not a directory" >&2; exit 2; }
  copied=0
  shopt -s nullglob
  for ext in "${patterns[@]}"; do
    for file in "$offline"/*."$ext"; do
      install -o clamav -g clamav -m 0644 "$file" "$db/"
      copied=$((copied + 1))
    done
  done
  shopt -u nullglob
  echo "offline signatures: copied $copied file(s) from $offline; freshclam is not run"
else
  echo "updating signatures with freshclam"
  freshclam --foreground --stdout || echo "freshclam failed (offline?); retrying in the background"
  # Daemon mode (`Checks` times a day, then a RELOAD for clamd), kept in the foreground of
  # a detached subshell: its parent is tini, not clamd, and it logs to the container.
  (freshclam --daemon --foreground --stdout </dev/null &)
fi

waited=0
until has_database; do
  if [ $((waited % 30)) -eq 0 ]; then
    echo "waiting for a signature database in $db before starting clamd (freshclam or offline signatures)"
  fi
  sleep 1
  waited=$((waited + 1))
done
echo "starting clamd on TCP 3310 with the signatures in $db"
# clamd drops to User clamav itself (clamd.conf).
exec clamd --foreground --config-file=/etc/clamav/clamd.conf
