"""The desired configuration of every managed service, rendered from templates.

Inputs: the mail settings (database), process settings (where the database and peers
are), and secrets generated at first start (database passwords, doveadm API key, auth policy
nonce).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from controller.db.grants import MAILMAN_DATABASE
from controller.domain.mail_settings import MailSettings
from controller.services import amavis, dovecot, opendkim, postfix, postgrey, tls_policy
from controller.services.certificates import paths as certificate_paths
from controller.services.managed import ManagedService
from controller.services.rendering import Release, render_release
from controller.services.secret_files import ensure_secret, read_secret
from controller.settings import Settings

MAIL_ROOT = "/var/vmail"
MAILMAN_LMTP_PORT = 8024

log = logging.getLogger(__name__)


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
        "tls_mandatory_ciphers": tls_policy.MANDATORY_TLS12_CIPHERS,
        "tls_excluded_ciphers": tls_policy.EXCLUDED_CIPHERS,
    }


def doveadm_api_key(settings: Settings) -> str:
    return ensure_secret(settings.state_dir / "secrets" / "doveadm-api-key")


def auth_policy_nonce(settings: Settings) -> str:
    """Dovecot requires a nonce with an auth policy server (it salts the password hash it
    could send; Mailyard's requests carry no password hash). One per installation, so
    every Dovecot replica gets the same."""
    return ensure_secret(settings.state_dir / "secrets" / "auth-policy-nonce")


def secret_values(settings: Settings, mail: MailSettings) -> list[str]:
    """Every secret that may appear in a rendered file, for redaction in diffs."""
    values = [
        read_secret(settings.secrets_dir / "db-postfix-password"),
        read_secret(settings.secrets_dir / "db-dovecot-password"),
        read_secret(settings.secrets_dir / "db-amavis-password"),
        read_secret(settings.secrets_dir / opendkim.PASSWORD_FILE_NAME),
        doveadm_api_key(settings),
        auth_policy_nonce(settings),
    ]
    if mail.relayhost_password is not None:
        values.append(mail.relayhost_password.get_secret_value())
    return [value for value in values if value]


def managed_services(settings: Settings) -> tuple[ManagedService, ...]:
    """The services the controller renders and reloads, in dependency order: Postfix
    delivers to Dovecot (LMTP), asks it about logins and quotas, and hands mail to
    Amavis, OpenDKIM and postgrey, so all of those go before it."""
    services = [dovecot.DOVECOT, opendkim.OPENDKIM, postgrey.POSTGREY]
    if settings.filter_mode != "off":
        services.append(amavis.AMAVIS)
    services.append(postfix.POSTFIX)
    return tuple(services)


@dataclass
class LearnedState:
    """What the controller learns about its stack while it runs. Process settings stay as
    they were read at start; these facts start from them (MAILYARD_MAILMAN_ROUTING,
    MAILYARD_LIST_NETWORK) and are then owned by the ConfigEngine."""

    # Postfix routes list addresses to Mailman once Mailman's table exists and Postfix
    # may read it (controller/db/grants.py).
    mailman_routing: bool = False
    # CIDR of the stack's `lists` network: OpenDKIM signs the list mail sent from it.
    list_network: str | None = None


def desired_releases(
    settings: Settings, mail: MailSettings, learned: LearnedState | None = None
) -> dict[str, Release]:
    learned = learned or LearnedState(settings.mailman_routing, settings.list_network)
    common = _common_context(settings, mail)
    password = mail.relayhost_password
    postfix_context = {
        **common,
        "db_user": "mailyard_postfix",
        "db_password": read_secret(settings.secrets_dir / "db-postfix-password"),
        "relayhost_password": password.get_secret_value() if password is not None else "",
        "filter_mode": settings.filter_mode,
        "amavis_host": settings.amavis_host,
        "amavis_inbound_port": amavis.INBOUND_PORT,
        "amavis_originating_port": amavis.ORIGINATING_PORT,
        "amavis_max_servers": amavis.MAX_SERVERS,
        "reinject_port": postfix.REINJECT_PORT,
        "reinject_listen": postfix.REINJECT_LISTEN_NAME,
        "network_tables_dir": postfix.NETWORK_TABLES_DIR,
        "opendkim_host": settings.opendkim_host,
        "opendkim_ports": [opendkim.MILTER_PORT, opendkim.MILTER_PORT_ED25519],
        "sender_milter_socket": postfix.SENDER_MILTER_SOCKET,
        "postgrey_host": settings.postgrey_host,
        "mailman_routing": learned.mailman_routing,
        "mailman_host": settings.mailman_host,
        "mailman_lmtp_port": MAILMAN_LMTP_PORT,
        "mailman_db_name": MAILMAN_DATABASE,
        "mailman_submit_port": postfix.MAILMAN_SUBMIT_PORT,
        "mailman_submit_listen": postfix.MAILMAN_SUBMIT_LISTEN_NAME,
        "web_submit_port": postfix.WEB_SUBMIT_PORT,
        "web_submit_listen": postfix.WEB_SUBMIT_LISTEN_NAME,
        "web_submit_messages_per_minute": postfix.WEB_SUBMIT_MESSAGES_PER_MINUTE,
        "web_submit_recipient_limit": postfix.WEB_SUBMIT_RECIPIENT_LIMIT,
        "postgrey_port": postgrey.POLICY_PORT,
    }
    dovecot_context = {
        **common,
        "db_user": "mailyard_dovecot",
        "db_password": read_secret(settings.secrets_dir / "db-dovecot-password"),
        "doveadm_api_key": doveadm_api_key(settings),
        "doveadm_port": settings.doveadm_port,
        "delivery_listen_name": dovecot.DELIVERY_LISTEN_NAME,
        "control_listen_name": dovecot.CONTROL_LISTEN_NAME,
        "db_port": settings.db_port,
        "auth_policy_port": dovecot.AUTH_POLICY_PORT,
        "auth_policy_nonce": auth_policy_nonce(settings),
        "vmail_uid": dovecot.VMAIL_UID,
        "mail_root": MAIL_ROOT,
        "junk_sieve": dovecot.JUNK_SIEVE,
        "duplicate_sieve": dovecot.DUPLICATE_SIEVE,
    }
    amavis_context = {
        **common,
        "db_user": "mailyard_amavis",
        "db_password": read_secret(settings.secrets_dir / "db-amavis-password"),
        "filter_mode": settings.filter_mode,
        "clamd_host": settings.clamd_host,
        "clamd_port": amavis.CLAMD_PORT,
        "reinject_host": settings.reinject_host,
        "reinject_port": postfix.REINJECT_PORT,
        "filter_listen": amavis.FILTER_LISTEN_NAME,
        "control_listen": amavis.CONTROL_LISTEN_NAME,
        "inbound_port": amavis.INBOUND_PORT,
        "originating_port": amavis.ORIGINATING_PORT,
        "pdp_port": amavis.PDP_PORT,
        "network_tables_dir": amavis.NETWORK_TABLES_DIR,
    }
    contexts = {
        postfix.SERVICE: postfix_context,
        dovecot.SERVICE: dovecot_context,
        amavis.SERVICE: amavis_context,
        postgrey.SERVICE: common,
        opendkim.SERVICE: opendkim.context(
            list_network=learned.list_network,
            db_host=settings.db_host,
            db_port=settings.db_port,
            db_name=settings.db_name,
            db_password=read_secret(settings.secrets_dir / opendkim.PASSWORD_FILE_NAME),
        ),
    }
    return {
        service.name: render_release(
            settings.templates_dir, service.name, service.templates, contexts[service.name]
        )
        for service in managed_services(settings)
    }
