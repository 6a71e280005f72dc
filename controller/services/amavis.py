"""Amavis (amavisd-new with SpamAssassin): the file Mailyard renders for it, and how a
release is checked, reloaded and gated.

Contract with images/amavis (docs/design/filter-chain.md): group id 220 is `amavis`
(amavisd.conf holds the database password, so it is root:amavis 0640), releases
appear under /etc/mailyard/amavis/releases, the running one at /etc/mailyard/active,
and the image has mailyard-amavis-validate, mailyard-amavis-reload,
mailyard-amavis-healthcheck and mailyard-activate.

Template context (`context()`): `s` (hostname, filter_spam_network_tests), db_host,
db_port, db_name, db_user, db_password, filter_mode ("full" | "no-clamav" | "off"),
clamd_host, clamd_port, reinject_host, reinject_port, filter_listen, control_listen,
inbound_port, originating_port, pdp_port, network_tables_dir.

Enabled unless MAILYARD_FILTER=off (then Postfix hands mail to no filter).
"""

from __future__ import annotations

from typing import Any

from controller.db.grants import TABLE_PRIVILEGES, DatabaseAccess
from controller.runtime import Replica, Runtime
from controller.services.managed import (
    ManagedService,
    RenderInputs,
    Validation,
    database_context,
)
from controller.services.rendering import TemplateFile
from controller.settings import Settings

SERVICE = "amavis"
AMAVIS_GID = 220
# Amavis reads its per-domain policy and keeps its SQL quarantine
# (docs/design/filter-chain.md); it sees no other table.
DATABASE = DatabaseAccess(
    SERVICE,
    tables={
        "amavis_policy": ("SELECT",),
        "maddr": TABLE_PRIVILEGES,
        "msgs": TABLE_PRIVILEGES,
        "msgrcpt": TABLE_PRIVILEGES,
        "quarantine": TABLE_PRIVILEGES,
    },
)
DB_USER = DATABASE.user
INBOUND_PORT = 10024  # Postfix's content_filter for mail from outside
ORIGINATING_PORT = 10026  # Postfix's content_filter for submission (587/465)
PDP_PORT = 9998  # AM.PDP: quarantine release
# amavisd's child processes (amavisd.conf $max_servers): Postfix's transport to Amavis
# must not open more connections at once than this.
MAX_SERVERS = 2
CLAMD_PORT = 3310
CLAMD_HOST = "clamav-scan"  # clamd's address on the `scan` network
# Where Amavis hands filtered mail back: Postfix's listener on the `filter` network
# (master.cf renders it from these).
REINJECT_HOST = "postfix-filter"
REINJECT_PORT = 10025
# Where it listens (compose.yaml aliases; images/common/bind-names.sh maps each to this
# container's address on that network): Postfix's mail on `filter`, releases on
# `control`. The entrypoint writes each network as NETWORK_TABLES_DIR/<name>.cidr.
FILTER_LISTEN_NAME = "amavis-filter"
CONTROL_LISTEN_NAME = "amavis-control"
NETWORK_TABLES_DIR = "/run/mailyard/networks"
FILTER_HOST = FILTER_LISTEN_NAME  # where Postfix hands it mail

TEMPLATES: tuple[TemplateFile, ...] = (
    TemplateFile("amavisd.conf.j2", "amavisd.conf", mode=0o640, gid=AMAVIS_GID),
)


def validate(runtime: Runtime, replica: Replica, release_path: str) -> Validation:
    """`amavisd -c FILE test-config` on the staged amavisd.conf (images/amavis/validate.sh):
    amavisd's own loader evaluates the file and checks that user amavis can read it;
    the running daemon is not touched."""
    result = runtime.exec(replica, ["mailyard-amavis-validate", f"{release_path}/amavisd.conf"])
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    if result.ok:
        # amavisd prints only notices on success (e.g. a retired variable).
        return Validation(warnings=lines)
    errors = [line for line in lines if not line.startswith("amavisd test-config failed")]
    if not errors:
        errors = lines or [f"mailyard-amavis-validate exited {result.exit_code}"]
    return Validation(errors=errors)


def context(inputs: RenderInputs) -> dict[str, Any]:
    return {
        "s": inputs.mail,
        **database_context(inputs, DATABASE),
        "filter_mode": inputs.settings.filter_mode,
        "clamd_host": CLAMD_HOST,
        "clamd_port": CLAMD_PORT,
        "reinject_host": REINJECT_HOST,
        "reinject_port": REINJECT_PORT,
        "filter_listen": FILTER_LISTEN_NAME,
        "control_listen": CONTROL_LISTEN_NAME,
        "inbound_port": INBOUND_PORT,
        "originating_port": ORIGINATING_PORT,
        "pdp_port": PDP_PORT,
        "network_tables_dir": NETWORK_TABLES_DIR,
    }


def enabled(settings: Settings) -> bool:
    return settings.filter_mode != "off"


AMAVIS = ManagedService(
    name=SERVICE,
    templates=TEMPLATES,
    validate=validate,
    # SIGHUP through `amavisd reload`; returns once the re-executed daemon answers SMTP.
    reload=("mailyard-amavis-reload",),
    # `timeout`: a check that hangs must not stall the gate past its deadline.
    gate=("timeout", "10", "mailyard-amavis-healthcheck"),
    context=context,
    enabled=enabled,
    database=DATABASE,
)
