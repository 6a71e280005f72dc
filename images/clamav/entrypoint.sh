#!/bin/bash
# Runs clamd (and freshclam) for Mailyard.
#   MAILYARD_FILTER=full (default): clamd on TCP 3310; no-clamav or off: idle.
#   MAILYARD_CLAMAV_OFFLINE_SIGNATURES=DIR: copy the signature files of DIR (a mounted
#     directory) into the database directory instead of running freshclam; when DIR
#     holds none, freshclam downloads them.
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

# Why clamd is not running yet, for the health check (and so for `mailyard status`).
status_file=/run/clamav/signatures-status
say_status() { printf '%s\n' "$1" >"$status_file"; }

# Offline signatures: the files of a mounted folder (compose.yaml mounts the host's
# clamav-signatures/ folder, or MAILYARD_CLAMAV_SIGNATURES, there). With none in it,
# freshclam downloads them; files put there later, while clamd still waits, are taken
# within seconds (no restart needed).
offline=${MAILYARD_CLAMAV_OFFLINE_SIGNATURES:-}
if [ -n "$offline" ] && [ ! -d "$offline" ]; then
  echo "MAILYARD_CLAMAV_OFFLINE_SIGNATURES=$offline is not a directory" >&2
  exit 2
fi
copy_offline() {  # prints how many files it copied
  local ext file copied=0
  if [ -n "$offline" ]; then
    shopt -s nullglob
    for ext in "${patterns[@]}"; do
      for file in "$offline"/*."$ext"; do
        install -o clamav -g clamav -m 0644 "$file" "$db/"
        copied=$((copied + 1))
      done
    done
    shopt -u nullglob
  fi
  echo "$copied"
}

copied=$(copy_offline)
if [ "$copied" -gt 0 ]; then
  echo "offline signatures: copied $copied file(s) from $offline; freshclam is not run"
else
  echo "updating signatures with freshclam"
  say_status "it has no virus signatures yet: freshclam is downloading them"
  if ! freshclam --foreground --stdout >/tmp/freshclam.log 2>&1; then
    cat /tmp/freshclam.log
    # The most telling error freshclam gave: the download's own message (e.g. "Couldn't
    # resolve host name"), else its last error (e.g. the CDN's 403/429 cool-down).
    reason=$(grep -o 'Message: .*' /tmp/freshclam.log | tail -n 1 | sed -E 's/^Message: *//' || true)
    if [ -z "$reason" ]; then
      reason=$(grep 'ERROR' /tmp/freshclam.log | grep -v 'Update failed\.$' | tail -n 1 | sed -E 's/^.*-> *//' || true)
    fi
    reason=$(printf '%s' "$reason" | tr -d '"\\' | cut -c1-160)
    say_status "it has no virus signatures: freshclam could not download them (${reason:-no reason given}) and keeps trying"
    echo "freshclam failed and keeps trying; until clamd runs, mail waits in Postfix's queue (nothing is lost). Without internet: put signature files into clamav-signatures/ (or MAILYARD_CLAMAV_SIGNATURES), they are taken at once; or set MAILYARD_FILTER=no-clamav and run 'docker compose up -d'."
  else
    cat /tmp/freshclam.log
  fi
  # Daemon mode (`Checks` times a day, then a RELOAD for clamd), kept in the foreground of
  # a detached subshell: its parent is tini, not clamd, and it logs to the container.
  (freshclam --daemon --foreground --stdout </dev/null &)
fi

waited=0
until has_database; do
  copied=$(copy_offline)
  if [ "$copied" -gt 0 ]; then
    echo "offline signatures: copied $copied file(s) from $offline"
    break
  fi
  if [ $((waited % 60)) -eq 0 ]; then
    echo "no virus signatures in $db yet: clamd waits, and mail waits in Postfix's queue (nothing is lost)"
  fi
  sleep 2
  waited=$((waited + 2))
done
say_status "clamd is loading its virus signatures"
echo "starting clamd on TCP 3310 with the signatures in $db"
# clamd drops to User clamav itself (clamd.conf).
exec clamd --foreground --config-file=/etc/clamav/clamd.conf
