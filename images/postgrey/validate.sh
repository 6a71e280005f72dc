#!/bin/bash
# Checks a staged postgrey.args before it goes live:
#   mailyard-postgrey-validate RELEASE_DIR/postgrey.args
# Output lines: "ERROR <text>". Exit 0 when the release may go live, 1 when it must not.
# The entrypoint reads the file with the same rules (`check_args`), so what passes here
# is exactly what postgrey is started with.
set -uo pipefail
file=${1:?postgrey.args of the staged release}
[[ $file == /etc/mailyard/postgrey/releases/*/postgrey.args && -f $file ]] || { echo "ERROR no release at $file"; exit 1; }
exec /usr/local/bin/mailyard-postgrey-entrypoint --check "$file"
