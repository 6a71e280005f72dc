"""What the apply pipeline needs to know about a managed service: how to validate a
staged release with the daemon's own checker, how to reload it, and how to tell at
protocol level that it is healthy. The commands live in the service's image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from controller.runtime import Replica, Runtime
from controller.services.rendering import TemplateFile

ACTIVATE = "mailyard-activate"
ACTIVE_LINK = "/etc/mailyard/active"


@dataclass(frozen=True)
class Validation:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


Validator = Callable[[Runtime, Replica, str], Validation]


@dataclass(frozen=True)
class ManagedService:
    name: str
    templates: tuple[TemplateFile, ...]
    validate: Validator  # (runtime, replica, release path inside the container)
    reload: tuple[str, ...]
    gate: tuple[str, ...]
    # Serves TLS with the stack's certificate: reloaded when a new one is deployed.
    uses_certificate: bool = False

    def release_path(self, name: str) -> str:
        """Where release `name` appears inside this service's containers."""
        return f"/etc/mailyard/{self.name}/releases/{name}"
