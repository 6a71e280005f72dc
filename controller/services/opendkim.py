"""OpenDKIM: the files Mailyard renders for it, and how a release is checked and reloaded.

Signing data does not go through releases: OpenDKIM reads its SigningTable and KeyTable
live from the database (Debian's build has OpenDBX; views `dkim_signing_table`,
`dkim_signing_table_ed25519` and `dkim_key_table` of migration 0004) and the private
keys from the `dkim` volume, so a new domain or key signs from the next message on. The
release only holds the two configuration files (they carry the `mailyard_opendkim`
database password, hence root:opendkim 0640).

Two OpenDKIM processes run in the container, because Debian's OpenDKIM 2.11 has one
SignatureAlgorithm per process (an Ed25519 key under rsa-sha256 fails with "expecting an
rsa key"): port 8891 signs with the domains' active RSA keys, port 8892 with their
active Ed25519 keys (RFC 8463). Postfix lists both milters; a domain with an active key
of each kind gets both signatures, as RFC 8463 recommends.

Contract with images/opendkim: gid 222 is `opendkim`, releases appear under
/etc/mailyard/opendkim/releases, the running one at /etc/mailyard/active, the keys at
/var/lib/mailyard-dkim (read-only), and the image has mailyard-opendkim-validate
(`opendkim -n -x` on both files), mailyard-opendkim-reload (SIGUSR1 to both processes:
re-read the configuration without a restart), mailyard-opendkim-healthcheck (a milter
option negotiation on ports 8891 and 8892) and mailyard-activate.

Template context (templates/opendkim/*.j2), see `context()`: listen_name, milter_port,
milter_port_ed25519, internal_hosts (list of addresses/CIDR), db_host,
db_port, db_name, db_user, db_password.
"""

from __future__ import annotations

from typing import Any

from controller.db.grants import DatabaseAccess
from controller.runtime import Replica, Runtime
from controller.services.managed import (
    ManagedService,
    RenderInputs,
    Validation,
    database_context,
)
from controller.services.rendering import TemplateFile

SERVICE = "opendkim"
OPENDKIM_GID = 222
MILTER_PORT = 8891
MILTER_PORT_ED25519 = 8892
# It reads its signing and key tables live (views of dkim_keys, migration 0004); the
# private keys themselves are files, never in the database.
DATABASE = DatabaseAccess(
    SERVICE,
    tables={
        "dkim_signing_table": ("SELECT",),
        "dkim_signing_table_ed25519": ("SELECT",),
        "dkim_key_table": ("SELECT",),
    },
)
DB_USER = DATABASE.user
KEY_DIR = "/var/lib/mailyard-dkim"  # inside the opendkim container
# OpenDKIM listens on its address on the `milter` network, which only Postfix shares
# (compose.yaml); the name maps to that address inside the container only
# (images/common/bind-names.sh), and Postfix reaches every replica by it.
LISTEN_NAME = "opendkim-milter"
MILTER_HOST = LISTEN_NAME  # where Postfix reaches both milters
# Clients whose mail is signed without SMTP AUTH: Postfix's own local submissions
# (pickup, bounces), and Mailman core on the `lists` network (list mail, Postfix's port
# 10027; context()). Authenticated senders are always signed.
DEFAULT_INTERNAL_HOSTS = ("127.0.0.1", "::1")

TEMPLATES: tuple[TemplateFile, ...] = (
    TemplateFile("opendkim.conf.j2", "opendkim.conf", mode=0o640, gid=OPENDKIM_GID),
    TemplateFile("opendkim-ed25519.conf.j2", "opendkim-ed25519.conf", mode=0o640, gid=OPENDKIM_GID),
)


def context(inputs: RenderInputs) -> dict[str, Any]:
    """The template context. The `lists` network is None while unknown: list mail is
    then not signed, and the log says so."""
    list_network = inputs.learned.list_network
    return {
        "listen_name": LISTEN_NAME,
        "milter_port": MILTER_PORT,
        "milter_port_ed25519": MILTER_PORT_ED25519,
        "internal_hosts": [*DEFAULT_INTERNAL_HOSTS, *([list_network] if list_network else [])],
        **database_context(inputs, DATABASE),
    }


def validate(runtime: Runtime, replica: Replica, release_path: str) -> Validation:
    """`opendkim -n -x` on both staged files (images/opendkim/validate.sh)."""
    result = runtime.exec(replica, ["mailyard-opendkim-validate", release_path])
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    if result.ok:
        return Validation(warnings=lines)
    return Validation(errors=lines or [f"opendkim -n exited {result.exit_code}"])


OPENDKIM = ManagedService(
    name=SERVICE,
    templates=TEMPLATES,
    validate=validate,
    reload=("mailyard-opendkim-reload",),
    # `timeout`: a check that hangs must not stall the gate past its deadline.
    gate=("timeout", "10", "mailyard-opendkim-healthcheck"),
    context=context,
    database=DATABASE,
)
