"""Dovecot: the files Mailyard renders for it, and its auth cache.

Contract with images/dovecot: group id 210 is `dovecot`, vmail is 5000:5000, releases
appear under /etc/mailyard/dovecot/releases, the running one at /etc/mailyard/active, and
the image has mailyard-dovecot-validate, mailyard-dovecot-healthcheck,
mailyard-activate and mailyard-auth-policy (the auth policy server, images/dovecot/
auth_policy.py, which reads auth-policy.json from the release it runs).
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from controller.db.grants import TABLE_PRIVILEGES, DatabaseAccess
from controller.runtime import Replica, Runtime
from controller.services.managed import (
    ManagedService,
    RenderInputs,
    TlsPort,
    Validation,
    database_context,
    tls_context,
)
from controller.services.rendering import TemplateFile
from controller.services.secret_files import ensure_secret
from controller.settings import Settings

log = logging.getLogger(__name__)

SERVICE = "dovecot"
DOVECOT_GID = 210
VMAIL_UID = 5000
MAIL_ROOT = "/var/vmail"
LMTP_PORT = 24
# Files spam into Junk; the SQL userdb names it per domain (filter policy). It is part of
# the image, compiled at start: Sieve keeps a compiled copy next to the script, which
# the read-only release volume could not hold.
JUNK_SIEVE = "/usr/local/share/mailyard/sieve/spam-to-junk.sieve"
DUPLICATE_SIEVE = "/usr/local/share/mailyard/sieve/duplicate-delivery.sieve"
SASL_PORT = 12345
QUOTA_STATUS_PORT = 12340
# Where the internal listeners bind (compose.yaml aliases; images/common/bind-names.sh
# maps each to this container's address on that network): LMTP, SASL and quota status on
# `delivery` (Postfix), doveadm on `control` (the controller).
DELIVERY_LISTEN_NAME = "dovecot-delivery"
CONTROL_LISTEN_NAME = "dovecot-control"
# The auth policy server (failed-login slowing and blocking) listens on 127.0.0.1 of each
# Dovecot container: only that container's auth process asks it.
AUTH_POLICY_PORT = 12341
# Where Postfix reaches LMTP, SASL and quota status of every replica.
DELIVERY_HOST = DELIVERY_LISTEN_NAME

# Dovecot reads mail data and writes only its failed-login counts (login_blocks, for its
# auth policy server, images/dovecot/auth_policy.py; migration 0006).
DATABASE = DatabaseAccess(
    SERVICE,
    columns={
        "domains": ("id", "name", "active"),
        "mailboxes": (
            "id",
            "domain_id",
            "address",
            "password_hash",
            "quota_mb",
            "active",
            "maildir",
        ),
        # Whether spam is filed into Junk (the userdb query names the Sieve before-script).
        "domain_filter_policies": ("domain_id", "spam_to_junk"),
    },
    tables={"login_blocks": TABLE_PRIVILEGES},
)

TEMPLATES: tuple[TemplateFile, ...] = (
    # Every file holds a secret (doveadm API key, auth policy nonce, database password).
    TemplateFile("dovecot.conf.j2", "dovecot.conf", mode=0o640, gid=DOVECOT_GID),
    TemplateFile("dovecot-sql.conf.ext.j2", "dovecot-sql.conf.ext", mode=0o640, gid=DOVECOT_GID),
    # The auth policy server runs as the dovecot user and reads this one.
    TemplateFile("auth-policy.json.j2", "auth-policy.json", mode=0o640, gid=DOVECOT_GID),
)


class AuthCache:
    """Flushes Dovecot's auth cache for changed users on every replica.

    Dovecot caches logins (and failed logins); without a flush a deleted mailbox could
    still log in, and a new one could be refused, until the cache entry expires. The
    flush goes through doveadm's HTTP API on the internal network; the cache TTL in
    dovecot.conf bounds the damage if a replica cannot be reached.
    """

    def __init__(self, host: str, port: int, api_key: str, timeout: float = 3.0) -> None:
        self._host = host
        self._port = port
        self._authorization = "X-Dovecot-API " + base64.b64encode(api_key.encode()).decode()
        self._timeout = timeout

    def _replicas(self) -> list[str]:
        try:
            infos = socket.getaddrinfo(self._host, self._port, socket.AF_INET, socket.SOCK_STREAM)
        except socket.gaierror:
            # No Dovecot running means no cache to flush.
            return []
        return sorted({str(info[4][0]) for info in infos})

    def flush(self, users: Sequence[str]) -> None:
        if not users:
            return
        body = json.dumps([["authCacheFlush", {"user": list(users)}, "flush"]]).encode()
        for address in self._replicas():
            request = urllib.request.Request(
                f"http://{address}:{self._port}/doveadm/v1",
                data=body,
                method="POST",
                headers={"Authorization": self._authorization, "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                    reply = json.loads(response.read())
            except (OSError, urllib.error.URLError, ValueError) as exc:
                log.warning("could not flush Dovecot's auth cache on %s: %s", address, exc)
                continue
            if not reply or reply[0][0] != "doveadmResponse":
                log.warning("Dovecot on %s refused the auth cache flush: %s", address, reply)


def doveadm_api_key(settings: Settings) -> str:
    """The key the controller's doveadm HTTP calls carry; made at first start."""
    return ensure_secret(settings.state_dir / "secrets" / "doveadm-api-key")


def auth_policy_nonce(settings: Settings) -> str:
    """Dovecot requires a nonce with an auth policy server (it salts the password hash it
    could send; Mailyard's requests carry no password hash). One per installation, so
    every Dovecot replica gets the same."""
    return ensure_secret(settings.state_dir / "secrets" / "auth-policy-nonce")


def secret_values(settings: Settings) -> list[str]:
    return [doveadm_api_key(settings), auth_policy_nonce(settings)]


def context(inputs: RenderInputs) -> dict[str, Any]:
    settings = inputs.settings
    return {
        "s": inputs.mail,
        **database_context(inputs, DATABASE),
        **tls_context(inputs),
        "lmtp_port": LMTP_PORT,
        "sasl_port": SASL_PORT,
        "quota_status_port": QUOTA_STATUS_PORT,
        "doveadm_api_key": doveadm_api_key(settings),
        "doveadm_port": settings.doveadm_port,
        "delivery_listen_name": DELIVERY_LISTEN_NAME,
        "control_listen_name": CONTROL_LISTEN_NAME,
        "auth_policy_port": AUTH_POLICY_PORT,
        "auth_policy_nonce": auth_policy_nonce(settings),
        "vmail_uid": VMAIL_UID,
        "mail_root": MAIL_ROOT,
        "junk_sieve": JUNK_SIEVE,
        "duplicate_sieve": DUPLICATE_SIEVE,
    }


def validate(runtime: Runtime, replica: Replica, release_path: str) -> Validation:
    """`doveconf -n` on the staged dovecot.conf, and the auth policy server's own check of
    auth-policy.json (images/dovecot/validate.sh)."""
    result = runtime.exec(replica, ["mailyard-dovecot-validate", f"{release_path}/dovecot.conf"])
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    warnings = [line for line in lines if "Warning:" in line]
    errors = [line for line in lines if line not in warnings]
    if not result.ok and not errors:
        errors.append(f"doveconf exited {result.exit_code}")
    return Validation(errors=errors if not result.ok else [], warnings=warnings)


DOVECOT = ManagedService(
    name=SERVICE,
    templates=TEMPLATES,
    validate=validate,
    reload=("doveadm", "reload"),
    # `timeout`: a check that hangs must not stall the gate past its deadline.
    gate=("timeout", "10", "mailyard-dovecot-healthcheck"),
    context=context,
    uses_certificate=True,  # IMAPS, POP3S, STARTTLS, ManageSieve
    tls_ports=(TlsPort(993, "implicit"), TlsPort(995, "implicit")),
    database=DATABASE,
    secrets=secret_values,
)
