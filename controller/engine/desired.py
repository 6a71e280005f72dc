"""The desired configuration of every managed service, rendered from templates.

Inputs: the mail settings (database), process settings (where the database and peers
are), what the controller learned about its stack, and secrets generated at first start
(database passwords, doveadm API key, auth policy nonce). Each service's module says
what its templates are rendered with (controller/services/registry.py lists them).
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.domain.mail_settings import MailSettings
from controller.services.managed import LearnedState, ManagedService, RenderInputs
from controller.services.registry import REGISTRY, enabled_services
from controller.services.rendering import Release, render_release
from controller.settings import Settings

__all__ = ["LearnedState", "desired_releases", "secret_values"]


def secret_values(
    settings: Settings, mail: MailSettings, registry: Sequence[ManagedService] = REGISTRY
) -> list[str]:
    """Every secret that may appear in a rendered file, for redaction in diffs."""
    values = [value for service in registry for value in service.secret_values(settings)]
    if mail.relayhost_password is not None:
        values.append(mail.relayhost_password.get_secret_value())
    return [value for value in values if value]


def desired_releases(
    settings: Settings,
    mail: MailSettings,
    learned: LearnedState | None = None,
    registry: Sequence[ManagedService] = REGISTRY,
) -> dict[str, Release]:
    inputs = RenderInputs(
        settings, mail, learned or LearnedState(settings.mailman_routing, settings.list_network)
    )
    return {
        service.name: render_release(
            settings.templates_dir, service.name, service.templates, service.context(inputs)
        )
        for service in enabled_services(settings, registry)
    }
