"""The managed services: the one list the apply pipeline, the certificate deploy, the
database grants and the drift check loop over. Adding a service is one line here
(docs/design/adding-a-service.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from controller.db.grants import DatabaseAccess
from controller.services import amavis, dovecot, opendkim, postfix, postgrey
from controller.services.managed import ManagedService
from controller.settings import Settings

REGISTRY: tuple[ManagedService, ...] = (
    dovecot.DOVECOT,
    opendkim.OPENDKIM,
    postgrey.POSTGREY,
    amavis.AMAVIS,
    postfix.POSTFIX,
)


def in_dependency_order(services: Sequence[ManagedService]) -> tuple[ManagedService, ...]:
    """Every service after those it names in `after` (when they are in `services`),
    otherwise in the given order. A cycle is a programming error."""
    names = {service.name for service in services}
    placed: list[ManagedService] = []
    done: set[str] = set()
    pending = list(services)
    while pending:
        ready = [
            service
            for service in pending
            if all(dependency in done or dependency not in names for dependency in service.after)
        ]
        if not ready:
            cycle = ", ".join(service.name for service in pending)
            raise ValueError(f"the services {cycle} depend on each other in a circle")
        placed.append(ready[0])
        done.add(ready[0].name)
        pending.remove(ready[0])
    return tuple(placed)


def enabled_services(
    settings: Settings, registry: Sequence[ManagedService] = REGISTRY
) -> tuple[ManagedService, ...]:
    """The services the controller renders and reloads with these settings, each after
    the services it sends work to."""
    return in_dependency_order([service for service in registry if service.enabled(settings)])


def database_accounts(
    registry: Iterable[ManagedService] = REGISTRY,
) -> list[DatabaseAccess]:
    """Every service's database account, enabled or not (the db container makes them
    all; a service enabled later finds its grants in place)."""
    return [service.database for service in registry if service.database is not None]
