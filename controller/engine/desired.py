"""The desired configuration of every managed service, rendered from templates.

Inputs: process settings (hostname, relayhost), secrets generated at first start, and
the mail defaults below (they become database settings with the settings pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.domain.validation import normalize_nexthop
from controller.services import dovecot, postfix
from controller.services.certificates import paths as certificate_paths
from controller.services.rendering import Release, render_release
from controller.services.secret_files import ensure_secret, read_secret
from controller.settings import Settings

MAIL_ROOT = "/var/vmail"


@dataclass(frozen=True)
class MailDefaults:
    message_size_limit: int = 50 * 1024 * 1024
    recipient_limit: int = 100
    dovecot_protocols: str = "imap pop3 lmtp sieve"
    imap_process_limit: int = 1024


def _common_context(settings: Settings) -> dict[str, Any]:
    certs = certificate_paths(settings.certs_dir)
    return {
        "hostname": settings.hostname,
        "db_host": settings.db_host,
        "db_name": settings.db_name,
        "dovecot_host": settings.dovecot_host,
        "lmtp_port": dovecot.LMTP_PORT,
        "sasl_port": dovecot.SASL_PORT,
        "quota_status_port": dovecot.QUOTA_STATUS_PORT,
        "tls_key_file": str(certs.key),
        "tls_chain_file": str(certs.chain),
    }


def doveadm_api_key(settings: Settings) -> str:
    return ensure_secret(settings.state_dir / "secrets" / "doveadm-api-key")


def desired_releases(settings: Settings, mail: MailDefaults | None = None) -> dict[str, Release]:
    mail = mail or MailDefaults()
    common = _common_context(settings)
    relayhost = (
        normalize_nexthop(settings.relayhost, "MAILYARD_RELAYHOST") if settings.relayhost else ""
    )
    postfix_context = {
        **common,
        "db_user": "mailyard_postfix",
        "db_password": read_secret(settings.secrets_dir / "db-postfix-password"),
        "relayhost": relayhost,
        "message_size_limit": mail.message_size_limit,
        "recipient_limit": mail.recipient_limit,
    }
    dovecot_context = {
        **common,
        "db_user": "mailyard_dovecot",
        "db_password": read_secret(settings.secrets_dir / "db-dovecot-password"),
        "doveadm_api_key": doveadm_api_key(settings),
        "doveadm_port": settings.doveadm_port,
        "dovecot_protocols": mail.dovecot_protocols,
        "imap_process_limit": mail.imap_process_limit,
        "vmail_uid": dovecot.VMAIL_UID,
        "mail_root": MAIL_ROOT,
    }
    return {
        postfix.SERVICE: render_release(
            settings.templates_dir, postfix.SERVICE, postfix.TEMPLATES, postfix_context
        ),
        dovecot.SERVICE: render_release(
            settings.templates_dir, dovecot.SERVICE, dovecot.TEMPLATES, dovecot_context
        ),
    }
