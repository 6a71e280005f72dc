"""A managed service: everything the apply pipeline needs to know about one daemon the
controller renders configuration for.

Each controller/services/<name>.py declares one `ManagedService` and
controller/services/registry.py lists them; the engine loops over that list and knows no
service by name. Declared here, per service:
- its templates (templates/<name>/) and the context they are rendered with;
- the secrets that may appear in its files (masked in diffs), its database account;
- which services it talks to (reloaded before it) and when it is enabled;
- whether it serves TLS with the stack's certificate, and on which ports;
- how a staged release is validated with the daemon's own checker, how it is reloaded,
  and how to tell at protocol level that it is healthy (commands of its image).
docs/design/adding-a-service.md walks through adding one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from controller.db.grants import DatabaseAccess
from controller.runtime import Replica, Runtime
from controller.services import tls_policy
from controller.services.certificates import paths as certificate_paths
from controller.services.rendering import TemplateFile
from controller.services.secret_files import read_secret
from controller.settings import Settings

if TYPE_CHECKING:
    # Only its type: services render the mail settings (`s` in every template) but
    # never decide them; the domain layer does.
    from controller.domain.mail_settings import MailSettings

ACTIVATE = "mailyard-activate"
ACTIVE_LINK = "/etc/mailyard/active"

# How a TLS port starts TLS: at once, or after SMTP's STARTTLS.
TlsMode = Literal["implicit", "smtp-starttls"]


@dataclass(frozen=True)
class Validation:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


Validator = Callable[[Runtime, Replica, str], Validation]


@dataclass
class LearnedState:
    """What the controller learns about its stack while it runs. Process settings stay as
    they were read at start; these facts start from them (MAILYARD_MAILMAN_ROUTING,
    MAILYARD_LIST_NETWORK) and are then owned by the ConfigEngine."""

    # Postfix routes list addresses to Mailman once Mailman's table exists and Postfix
    # may read it (controller/services/mailman_routing.py).
    mailman_routing: bool = False
    # CIDR of the stack's `lists` network: OpenDKIM signs the list mail sent from it.
    list_network: str | None = None


@dataclass(frozen=True)
class RenderInputs:
    """What a service's render context is made from."""

    settings: Settings  # the process settings (where things are)
    mail: MailSettings  # the mail settings (what the administrator chose)
    learned: LearnedState  # what the controller learned about its stack


Context = Callable[[RenderInputs], Mapping[str, Any]]
SecretValues = Callable[[Settings], list[str]]


@dataclass(frozen=True)
class TlsPort:
    port: int
    mode: TlsMode


def _always(_settings: Settings) -> bool:
    return True


def _no_secrets(_settings: Settings) -> list[str]:
    return []


def _mail_settings_only(inputs: RenderInputs) -> Mapping[str, Any]:
    return {"s": inputs.mail}


@dataclass(frozen=True)
class ManagedService:
    name: str
    templates: tuple[TemplateFile, ...]
    validate: Validator  # (runtime, replica, release path inside the container)
    reload: tuple[str, ...]
    gate: tuple[str, ...]
    # The template context; the default gives the mail settings as `s`.
    context: Context = _mail_settings_only
    # Services this one sends work to: they are reloaded before it, so that it never
    # points at a listener that is not there yet.
    after: tuple[str, ...] = ()
    # Whether the stack runs it with these process settings.
    enabled: Callable[[Settings], bool] = _always
    # Serves TLS with the stack's certificate: reloaded when a new one is deployed, and
    # these ports are probed to see which certificate they serve.
    uses_certificate: bool = False
    tls_ports: tuple[TlsPort, ...] = ()
    # Its own database account (made by the db container, granted after migrations).
    database: DatabaseAccess | None = None
    # Secrets other than its database password that its files may hold.
    secrets: SecretValues = _no_secrets

    def release_path(self, name: str) -> str:
        """Where release `name` appears inside this service's containers."""
        return f"/etc/mailyard/{self.name}/releases/{name}"

    def secret_values(self, settings: Settings) -> list[str]:
        """Every secret that may appear in this service's rendered files."""
        values = self.secrets(settings)
        if self.database is not None:
            values = [database_password(settings, self.database), *values]
        return [value for value in values if value]


def database_password(settings: Settings, access: DatabaseAccess) -> str:
    """The account's password, as the db container wrote it into the secrets volume."""
    return read_secret(settings.secrets_dir / access.password_file)


def database_context(inputs: RenderInputs, access: DatabaseAccess) -> dict[str, Any]:
    """Where a service's SQL lookups connect, and as whom."""
    settings = inputs.settings
    return {
        "db_host": settings.db_host,
        "db_port": settings.db_port,
        "db_name": settings.db_name,
        "db_user": access.user,
        "db_password": database_password(settings, access),
    }


def tls_context(inputs: RenderInputs) -> dict[str, Any]:
    """The certificate's files and the stack's TLS policy (controller/services/tls_policy.py)."""
    certs = certificate_paths(inputs.settings.certs_dir)
    return {
        "tls_key_file": str(certs.key),
        "tls_chain_file": str(certs.chain),
        "tls_mandatory_ciphers": tls_policy.MANDATORY_TLS12_CIPHERS,
        "tls_excluded_ciphers": tls_policy.EXCLUDED_CIPHERS,
    }
