#!/bin/bash
# Starts MariaDB for Mailyard.
#
# First start: generates one random password per database user into the secrets volume
# (never into the image), initialises the data directory. Every start: re-applies the
# users and passwords from the secrets volume through --init-file, so a restored
# database or a regenerated secret never leaves a service locked out.
set -euo pipefail

secrets_dir=/var/lib/mailyard-secrets
datadir=/var/lib/mysql
database=${MAILYARD_DB_NAME:-mailyard}
mailman_secrets_dir=/var/lib/mailyard-mailman-secrets

umask 077
mkdir -p "$secrets_dir" "$mailman_secrets_dir"
# Writes a random password into FILE unless it has one.
generate() {
  local file=$1 what=$2
  if [ ! -s "$file" ]; then
    # 32 characters from [A-Za-z0-9]: safe inside SQL, Postfix and Dovecot config quoting.
    # (No `tr </dev/urandom | head`: under pipefail its SIGPIPE would abort the script.)
    random=$(head -c 1024 /dev/urandom | tr -dc 'A-Za-z0-9')
    [ ${#random} -ge 32 ] || { echo "could not generate a password" >&2; exit 1; }
    printf '%s' "${random:0:32}" >"$file.tmp"
    mv "$file.tmp" "$file"
    echo "generated $what (stored in a secrets volume)"
  fi
}
# The managed services that read the database, one account each (compose.yaml sets the
# list; the controller grants each what its service module declares).
service_users=${MAILYARD_DB_SERVICE_USERS:?set MAILYARD_DB_SERVICE_USERS to the services with a database account (compose.yaml)}
for user in $service_users; do
  # Names go into SQL and file names: lower-case letters and digits only.
  [[ $user =~ ^[a-z][a-z0-9]{0,30}$ ]] || { echo "not a service name: '$user'" >&2; exit 1; }
done
for user in controller $service_users; do
  generate "$secrets_dir/db-$user-password" "the database password for '$user'"
done
# Mailman's own secrets live in a volume of their own: the mailman-core container mounts
# it and nothing else, so it never sees the other services' passwords.
generate "$mailman_secrets_dir/db-mailman-password" "the database password for 'mailman'"
generate "$mailman_secrets_dir/mailman-rest-password" "the Mailman REST API password"
# For the optional web interface (compose profile "web"): its database and the key
# HyperKitty's archiver and Mailman share.
generate "$mailman_secrets_dir/db-mailmanweb-password" "the database password for 'mailmanweb'"
generate "$mailman_secrets_dir/hyperkitty-api-key" "the HyperKitty archiver key"
# The controller reads these files as its own user, uid 990 (images/controller), with no
# capability: they are its. The other services read theirs as root before dropping
# privileges (Mailman's entrypoint renders mailman.cfg, mailman-web its settings).
chmod 0600 "$secrets_dir"/db-*-password "$mailman_secrets_dir"/*-password
chown 990:990 "$secrets_dir" "$secrets_dir"/db-*-password "$mailman_secrets_dir/mailman-rest-password"
chmod 0700 "$secrets_dir"
# Into Mailman's secrets the controller only passes to read its one file.
chmod 0711 "$mailman_secrets_dir"

if [ ! -d "$datadir/mysql" ]; then
  echo "initialising the MariaDB data directory"
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db >/dev/null
fi
chown -R mysql:mysql "$datadir" /run/mysqld

password() { cat "$secrets_dir/db-$1-password"; }
init_file=/run/mysqld/mailyard-init.sql
rm -f /run/mysqld/mailyard-ready
cat >"$init_file" <<SQL
CREATE DATABASE IF NOT EXISTS \`$database\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'mailyard'@'%';
ALTER USER 'mailyard'@'%' IDENTIFIED BY '$(password controller)';
GRANT ALL PRIVILEGES ON \`$database\`.* TO 'mailyard'@'%' WITH GRANT OPTION;
-- The services' accounts get table and column grants from the controller after each
-- migration (least privilege: Postfix never sees password hashes).
$(for user in $service_users; do
  printf "CREATE USER IF NOT EXISTS 'mailyard_%s'@'%%';\n" "$user"
  printf "ALTER USER 'mailyard_%s'@'%%' IDENTIFIED BY '%s';\n" "$user" "$(password "$user")"
done)
-- Mailman 3 keeps its lists in a database of its own (it creates its tables itself).
-- The controller may read it and hand Postfix the two columns it routes by (a grant
-- only possible once Mailman has created the table).
CREATE DATABASE IF NOT EXISTS \`mailman\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'mailyard_mailman'@'%';
ALTER USER 'mailyard_mailman'@'%' IDENTIFIED BY '$(cat "$mailman_secrets_dir/db-mailman-password")';
GRANT ALL PRIVILEGES ON \`mailman\`.* TO 'mailyard_mailman'@'%';
GRANT SELECT ON \`mailman\`.* TO 'mailyard'@'%' WITH GRANT OPTION;
-- The web interface (Postorius/HyperKitty, profile "web") keeps its Django data apart.
CREATE DATABASE IF NOT EXISTS \`mailmanweb\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'mailyard_mailmanweb'@'%';
ALTER USER 'mailyard_mailmanweb'@'%' IDENTIFIED BY '$(cat "$mailman_secrets_dir/db-mailmanweb-password")';
GRANT ALL PRIVILEGES ON \`mailmanweb\`.* TO 'mailyard_mailmanweb'@'%';
FLUSH PRIVILEGES;
SQL
chown mysql:mysql "$init_file"
chmod 0600 "$init_file"

mariadbd --user=mysql --datadir="$datadir" --init-file="$init_file" &
server_pid=$!
trap 'kill -TERM $server_pid; wait $server_pid' TERM INT

# Mark ready once the controller's credentials work over TCP, i.e. the init file ran.
for _ in $(seq 1 120); do
  if MYSQL_PWD="$(password controller)" mariadb --protocol=tcp -h 127.0.0.1 -u mailyard \
       -e 'SELECT 1' "$database" >/dev/null 2>&1; then
    touch /run/mysqld/mailyard-ready
    rm -f "$init_file"
    echo "MariaDB is ready for Mailyard"
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 1
done
wait "$server_pid"
