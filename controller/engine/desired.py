"""The desired configuration of every managed service, rendered from templates.

Inputs: the mail settings (database), process settings (where the database and peers
are), and secrets generated at first start (database passwords, doveadm API key).
"""

from __future__ import annotations

from typing import Any

from controller.domain.mail_settings import MailSettings
from controller.services import dovecot, postfix
from controller.services.certificates import paths as certificate_paths
from controller.services.managed import ManagedService
from controller.services.rendering import Release, render_release
from controller.services.secret_files import ensure_secret, read_secret
from controller.settings import Settings

MAIL_ROOT = "/var/vmail"

# Dependency order for reloads: Postfix delivers to Dovecot (LMTP) and asks it about
# logins (SASL) and quotas, so Dovecot goes first.
MANAGED_SERVICES: tuple[ManagedService, ...] = (dovecot.DOVECOT, postfix.POSTFIX)


def _common_context(settings: Settings, mail: MailSettings) -> dict[str, Any]:
    certs = certificate_paths(settings.certs_dir)
    return {
        "s": mail,
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


def secret_values(settings: Settings, mail: MailSettings) -> list[str]:
    """Every secret that may appear in a rendered file, for redaction in diffs."""
    values = [
        read_secret(settings.secrets_dir / "db-postfix-password"),
        read_secret(settings.secrets_dir / "db-dovecot-password"),
        doveadm_api_key(settings),
    ]
    if mail.relayhost_password is not None:
        values.append(mail.relayhost_password.get_secret_value())
    return [value for value in values if value]


def desired_releases(settings: Settings, mail: MailSettings) -> dict[str, Release]:
    common = _common_context(settings, mail)
    password = mail.relayhost_password
    postfix_context = {
        **common,
        "db_user": "mailyard_postfix",
        "db_password": read_secret(settings.secrets_dir / "db-postfix-password"),
        "relayhost_password": password.get_secret_value() if password is not None else "",
    }
    dovecot_context = {
        **common,
        "db_user": "mailyard_dovecot",
        "db_password": read_secret(settings.secrets_dir / "db-dovecot-password"),
        "doveadm_api_key": doveadm_api_key(settings),
        "doveadm_port": settings.doveadm_port,
        "vmail_uid": dovecot.VMAIL_UID,
        "mail_root": MAIL_ROOT,
    }
    contexts = {postfix.SERVICE: postfix_context, dovecot.SERVICE: dovecot_context}
    return {
        service.name: render_release(
            settings.templates_dir, service.name, service.templates, contexts[service.name]
        )
        for service in MANAGED_SERVICES
    }
