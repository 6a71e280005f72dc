"""Postfix: the files Mailyard renders for it, and how a release is checked.

Contract with images/postfix: group id 200 is `postfix` (SQL maps are root:postfix
0640 because they hold the database password), releases appear under
/etc/mailyard/postfix/releases, the running one at /etc/mailyard/active, and the image
has mailyard-postfix-validate, mailyard-postfix-healthcheck, mailyard-postfix-reload and
mailyard-activate. Its entrypoint runs the sender milter on SENDER_MILTER_SOCKET and
policyd-rate-limit on the spool socket ratelimit/policy (images/postfix/entrypoint.sh).
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.db.grants import MAILMAN_DATABASE, DatabaseAccess
from controller.runtime import Replica, Runtime
from controller.services import amavis, dovecot, opendkim, postgrey
from controller.services.managed import (
    ManagedService,
    RenderInputs,
    TlsPort,
    Validation,
    database_context,
    tls_context,
)
from controller.services.rendering import TemplateFile

log = logging.getLogger(__name__)

SERVICE = "postfix"
POSTFIX_GID = 200
# Where Amavis hands filtered mail back (master.cf); Amavis owns the contract.
REINJECT_PORT = amavis.REINJECT_PORT
# Where Mailman sends list mail out (master.cf; DKIM signed and filtered like submitted
# mail).
MAILMAN_SUBMIT_PORT = 10027
# Where the web interface (Postorius, HyperKitty) sends its mail: few, rate limited.
WEB_SUBMIT_PORT = 10028
WEB_SUBMIT_MESSAGES_PER_MINUTE = 30
WEB_SUBMIT_RECIPIENT_LIMIT = 5
# Each of those listeners binds to Postfix's address on the network of its one client
# (compose.yaml aliases; images/common/bind-names.sh maps them inside the container) and
# trusts exactly that network: images/postfix/entrypoint.sh writes it, as a cidr table
# named after the listener, into NETWORK_TABLES_DIR.
REINJECT_LISTEN_NAME = amavis.REINJECT_HOST
MAILMAN_SUBMIT_LISTEN_NAME = "postfix-lists"
WEB_SUBMIT_LISTEN_NAME = "postfix-webmail"
NETWORK_TABLES_DIR = "/run/mailyard/networks"
# The milter that binds the header From/Sender of submitted mail to the SASL login
# (images/postfix/sender_milter.py); a unix socket inside the container only.
SENDER_MILTER_SOCKET = "/run/mailyard-milter/sender.sock"
# Mailman core's LMTP on the `lists` network, where list mail is delivered.
MAILMAN_HOST = "mailman-lists"
MAILMAN_LMTP_PORT = 8024

# Postfix never gets the password hashes and writes nothing. Its read of Mailman's list
# table is granted once Mailman has made it (controller/services/mailman_routing.py).
DATABASE = DatabaseAccess(
    SERVICE,
    columns={
        "domains": ("id", "name", "active"),
        "mailboxes": ("id", "domain_id", "address", "active"),
        "aliases": ("id", "domain_id", "address", "active"),
        "alias_destinations": ("alias_id", "address"),
        "alias_domains": ("id", "name", "target_domain_id", "active"),
        "relay_domains": ("id", "name", "nexthop", "active"),
    },
)

SQL_MAPS = (
    "virtual_mailbox_domains",
    "virtual_mailbox_maps",
    "virtual_alias_domains",
    "virtual_alias_maps",
    "alias_domain_maps",
    "alias_domain_catchall_maps",
    "relay_domains",
    "transport_maps",
    "sender_login_maps",
    "mailman_lists",
    "mailman_list_addresses",
    # Port 25: hosted domains refused as a stranger's envelope sender.
    "hosted_sender_domains",
)

TEMPLATES: tuple[TemplateFile, ...] = (
    TemplateFile("main.cf.j2", "main.cf"),
    TemplateFile("master.cf.j2", "master.cf"),
    # postfix-policyd-spf-python's options (spawned from master.cf).
    TemplateFile("policyd-spf.conf.j2", "policyd-spf.conf"),
    # policyd-rate-limit's options: the per-login outbound limit on 587/465.
    TemplateFile("policyd-rate-limit.yaml.j2", "policyd-rate-limit.yaml"),
    # SASL credentials for the relayhost (texthash: no postmap needed).
    TemplateFile("relay_passwords.j2", "relay_passwords", mode=0o640, gid=POSTFIX_GID),
    *(
        TemplateFile(f"sql/{name}.cf.j2", f"sql/{name}.cf", mode=0o640, gid=POSTFIX_GID)
        for name in SQL_MAPS
    ),
)

PROBE_LOG_WAIT = 3.0


def validate(runtime: Runtime, replica: Replica, release_path: str) -> Validation:
    """`postfix check`, `postconf -n` and an smtpd probe of each restriction list, run
    by images/postfix/validate.sh against the staged release.

    The probe is a real smtpd reading the staged main.cf; an unknown restriction makes it
    answer 451 4.3.5 and log why. Postfix daemons log only through postlogd (into the
    container's log), so the probe's lines are read back from there by its unique name.
    """
    probe = f"mailyard-probe-{secrets.token_hex(4)}"
    since = datetime.now(UTC) - timedelta(seconds=1)
    result = runtime.exec(replica, ["mailyard-postfix-validate", release_path, probe])
    errors: list[str] = []
    warnings: list[str] = []
    failed_probes: list[str] = []
    for line in result.output.splitlines():
        kind, _, text = line.partition(" ")
        if kind == "ERROR":
            errors.append(text)
        elif kind == "WARNING":
            warnings.append(text)
        elif kind == "PROBE-FAILED":
            failed_probes.append(text)
    if failed_probes:
        errors.extend(_probe_messages(runtime, replica, probe, since) or failed_probes)
    if not result.ok and not errors:
        errors.append(
            result.output.strip() or f"mailyard-postfix-validate exited {result.exit_code}"
        )
    return Validation(errors=errors, warnings=warnings)


def _probe_messages(runtime: Runtime, replica: Replica, probe: str, since: datetime) -> list[str]:
    deadline = time.monotonic() + PROBE_LOG_WAIT
    while True:
        lines = [line for line in runtime.logs_since(replica, since).splitlines() if probe in line]
        messages = [
            line.split(": ", 1)[1]
            for line in lines
            if any(mark in line for mark in (": warning: ", ": fatal: ", ": error: "))
        ]
        finished = sum("disconnect from" in line for line in lines) >= 1
        if (messages and finished) or time.monotonic() > deadline:
            return messages
        time.sleep(0.2)


def context(inputs: RenderInputs) -> dict[str, Any]:
    settings, mail = inputs.settings, inputs.mail
    password = mail.relayhost_password
    return {
        "s": mail,
        **database_context(inputs, DATABASE),
        **tls_context(inputs),
        "relayhost_password": password.get_secret_value() if password is not None else "",
        "dovecot_host": dovecot.DELIVERY_HOST,
        "lmtp_port": dovecot.LMTP_PORT,
        "sasl_port": dovecot.SASL_PORT,
        "quota_status_port": dovecot.QUOTA_STATUS_PORT,
        "filter_mode": settings.filter_mode,
        "amavis_host": amavis.FILTER_HOST,
        "amavis_inbound_port": amavis.INBOUND_PORT,
        "amavis_originating_port": amavis.ORIGINATING_PORT,
        "amavis_max_servers": amavis.MAX_SERVERS,
        "reinject_port": REINJECT_PORT,
        "reinject_listen": REINJECT_LISTEN_NAME,
        "network_tables_dir": NETWORK_TABLES_DIR,
        "opendkim_host": opendkim.MILTER_HOST,
        "opendkim_ports": [opendkim.MILTER_PORT, opendkim.MILTER_PORT_ED25519],
        "sender_milter_socket": SENDER_MILTER_SOCKET,
        "postgrey_host": postgrey.POLICY_HOST,
        "postgrey_port": postgrey.POLICY_PORT,
        "mailman_routing": inputs.learned.mailman_routing,
        "mailman_host": MAILMAN_HOST,
        "mailman_lmtp_port": MAILMAN_LMTP_PORT,
        "mailman_db_name": MAILMAN_DATABASE,
        "mailman_submit_port": MAILMAN_SUBMIT_PORT,
        "mailman_submit_listen": MAILMAN_SUBMIT_LISTEN_NAME,
        "web_submit_port": WEB_SUBMIT_PORT,
        "web_submit_listen": WEB_SUBMIT_LISTEN_NAME,
        "web_submit_messages_per_minute": WEB_SUBMIT_MESSAGES_PER_MINUTE,
        "web_submit_recipient_limit": WEB_SUBMIT_RECIPIENT_LIMIT,
    }


POSTFIX = ManagedService(
    name=SERVICE,
    templates=TEMPLATES,
    validate=validate,
    # `postfix reload`, and a restart of policyd-rate-limit when its file changed.
    reload=("mailyard-postfix-reload",),
    # `timeout`: a check that hangs (e.g. a full listen queue) must not stall the gate.
    gate=("timeout", "10", "mailyard-postfix-healthcheck"),
    context=context,
    # It hands mail to all of these: each must serve its new release first.
    after=(dovecot.SERVICE, opendkim.SERVICE, postgrey.SERVICE, amavis.SERVICE),
    uses_certificate=True,  # STARTTLS on 25 and 587, TLS on 465
    tls_ports=(
        TlsPort(25, "smtp-starttls"),
        TlsPort(465, "implicit"),
        TlsPort(587, "smtp-starttls"),
    ),
    database=DATABASE,
)


def flush_queue(runtime: Runtime) -> None:
    """`postqueue -f` on every replica: deferred mail is tried again now."""
    for replica in runtime.replicas(SERVICE):
        if replica.running:
            result = runtime.exec(replica, ["postqueue", "-f"])
            if not result.ok:
                log.warning("could not flush the queue of %s: %s", replica.name, result.output)


def forget_domain_classes(runtime: Runtime) -> None:
    """Called after a hosted, alias or relay domain was added, changed or removed.

    Each smtpd process keeps how it classified every recipient address it saw (local,
    virtual, relay or foreign: a 100-entry cache in Postfix's smtpd_resolve.c with no
    expiry) for as long as it lives, which under steady traffic is many minutes. An
    address refused with "Relay access denied" before its domain existed would stay
    refused that long. A graceful `postfix reload` lets sessions in progress finish and
    gives new connections fresh processes. Best effort: a replica that cannot be reached
    is logged, and its processes age out on their own."""
    for replica in runtime.replicas(SERVICE):
        if not replica.running:
            continue
        result = runtime.exec(replica, ["postfix", "reload"])
        if not result.ok:
            log.warning(
                "%s could not forget how it classified recipient domains (%s): a new "
                "domain may be refused there until its smtpd processes are replaced",
                replica.name,
                result.output.strip()[-200:],
            )
