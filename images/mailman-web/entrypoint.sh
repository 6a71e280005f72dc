#!/bin/bash
# Starts Mailyard's web interface: Postorius and HyperKitty (Debian's mailman3-web).
#
# As root: checks the secrets, renders the Django settings, waits for the certificate and
# the database, applies migrations and the superuser (as www-data), then runs uWSGI
# (drops to www-data; also runs django-q and HyperKitty's periodic jobs) and nginx (HTTPS
# on 8443) as children of this script (tini is PID 1), plus a certificate watcher that
# reloads nginx when the certificate files change. If uWSGI or nginx exits, the container
# stops (the restart policy starts it again).
set -euo pipefail

secrets_dir=${MAILYARD_SECRETS_DIR:-/var/lib/mailyard-secrets}
export MAILYARD_SECRETS_DIR=$secrets_dir
state=/var/lib/mailyard-web
certs=/etc/mailyard/certs
level=${MAILYARD_LOG_LEVEL:-info}
export MAILYARD_WEB_WORKERS=${MAILYARD_WEB_WORKERS:-1}
export MAILYARD_WEB_QUIET=true
[ "$level" = debug ] && MAILYARD_WEB_QUIET=false
check_interval=${MAILYARD_WEB_CERT_CHECK_INTERVAL:-30}
for value in "$MAILYARD_WEB_WORKERS" "$check_interval"; do
  [[ $value =~ ^[1-9][0-9]*$ ]] || { echo "not a positive number: $value" >&2; exit 1; }
done

random() {  # $1 characters from [A-Za-z0-9]
  local value
  value=$(head -c 4096 /dev/urandom | tr -dc 'A-Za-z0-9')
  [ ${#value} -ge "$1" ] || { echo "could not generate a secret" >&2; exit 1; }
  printf '%s' "${value:0:$1}"
}
new_secret() {  # file length what: writes a random secret unless the file has one
  if [ ! -s "$1" ]; then
    (umask 077; random "$2" >"$1.tmp"; mv "$1.tmp" "$1")
    echo "generated $3"
  fi
}

# Made by the db service in the Mailman secrets volume (mounted read-only here): the
# database password, Mailman's REST password and the HyperKitty archiver key (shared with
# mailman-core). Stand-alone with a writable directory, missing ones are generated.
for name in db-mailmanweb-password mailman-rest-password hyperkitty-api-key; do
  file=$secrets_dir/$name
  for _ in $(seq 1 60); do
    [ -s "$file" ] && break
    if [ -w "$secrets_dir" ]; then
      new_secret "$file" 32 "$name (stored in the secrets volume)"
      break
    fi
    echo "waiting for $file"
    sleep 2
  done
  [ -s "$file" ] || { echo "missing $file (and $secrets_dir is read-only)" >&2; exit 1; }
done

# Django's SECRET_KEY and, unless given, the superuser's password: first start only, in
# the state volume (root 0600).
mkdir -p "$state/fulltext_index"
new_secret "$state/secret-key" 50 "Django's SECRET_KEY (stored in the web state volume)"
if [ -z "${MAILYARD_WEB_ADMIN_PASSWORD:-}" ]; then
  new_secret "$state/admin-password" 24 \
    "the password of the web superuser '${MAILYARD_WEB_ADMIN_USER:-admin}' ($state/admin-password)"
  MAILYARD_WEB_ADMIN_PASSWORD=$(cat "$state/admin-password")
fi
export MAILYARD_WEB_ADMIN_PASSWORD
chown root:www-data "$state"
chmod 0770 "$state"
chown -R www-data:www-data "$state/fulltext_index"

# Port 8000 (the archiver API) listens on the `mailman` network only (nginx.conf).
mailyard-bind-names mailman-web-archive

mailyard-web-render-settings

# The certificate comes from the controller (self-signed at its first start, then ACME or
# the admin's own); wait for it.
for _ in $(seq 1 150); do
  [ -s "$certs/fullchain.pem" ] && [ -s "$certs/privkey.pem" ] && break
  echo "waiting for $certs/fullchain.pem and privkey.pem"
  sleep 2
done
nginx -t -q || { echo "nginx refuses its configuration or the certificate" >&2; exit 1; }

as_web() { setpriv --reuid=www-data --regid=www-data --init-groups "$@"; }
cd /usr/share/mailman3-web

waited=0
until as_web python3 - <<'PY' 2>/tmp/db-error
import sys
sys.path.insert(0, "/usr/share/mailman3-web")
import settings, MySQLdb
db = settings.DATABASES["default"]
MySQLdb.connect(host=db["HOST"], port=int(db["PORT"]), user=db["USER"],
                passwd=db["PASSWORD"], db=db["NAME"], connect_timeout=5).close()
PY
do
  if [ $waited -ge 120 ]; then
    echo "the database is not reachable after ${waited}s:" >&2
    tail -n 1 /tmp/db-error >&2
    exit 1
  fi
  [ $((waited % 10)) -eq 0 ] && echo "waiting for the database: $(tail -n 1 /tmp/db-error)"
  sleep 2
  waited=$((waited + 2))
done
rm -f /tmp/db-error

# Schema: created at the first start, migrated after a package upgrade (no-op otherwise).
as_web python3 manage.py migrate --noinput -v0
as_web python3 /usr/local/bin/mailyard-web-init-site

uwsgi --ini /etc/mailman3/mailyard-uwsgi.ini &
uwsgi_pid=$!
nginx &
nginx_pid=$!

# nginx reads the certificate at start and at reload only: reload it when the files
# change (the controller replaces them in place on renewal). `nginx -t` first: while only
# one of the two files is new, the pair does not match yet and the next round retries.
fingerprint() { cat "$certs/fullchain.pem" "$certs/privkey.pem" 2>/dev/null | cksum; }
(
  trap 'exit 0' TERM
  current=$(fingerprint)
  while sleep "$check_interval" & wait $!; do
    new=$(fingerprint)
    [ "$new" = "$current" ] && continue
    if nginx -t -q 2>/dev/null; then
      nginx -s reload && current=$new && echo "certificate changed: nginx reloaded"
    fi
  done
) &
watcher_pid=$!

stopping=
stop() {
  stopping=1
  kill -TERM "$watcher_pid" "$uwsgi_pid" 2>/dev/null || true
  kill -QUIT "$nginx_pid" 2>/dev/null || true
}
trap stop TERM INT
status=0
wait -n "$uwsgi_pid" "$nginx_pid" || status=$?
stop
wait "$uwsgi_pid" "$nginx_pid" 2>/dev/null || true
# Asked to stop (docker stop): a clean exit. Otherwise uWSGI or nginx died on its own.
[ -n "$stopping" ] && status=0
echo "stopped (status $status)"
exit "$status"
