#!/bin/sh
# Healthy only once the server answers and the init file (users, grants) has been applied:
# the entrypoint writes the ready marker after the server accepted a query as the
# controller's user.
set -e
mariadb-admin --protocol=socket ping >/dev/null
test -f /run/mysqld/mailyard-ready
