"""The container runtime as the rest of the controller sees it.

Only this package talks to the Docker engine (controller.runtime.docker_engine); the
engine and services layers depend on the `Runtime` protocol below.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class RuntimeUnavailable(Exception):
    """The container runtime cannot be reached (e.g. no Docker socket mounted)."""


@dataclass(frozen=True)
class Replica:
    """One running or stopped container of a managed service."""

    id: str
    name: str
    service: str
    number: int
    running: bool
    restarting: bool
    started_at: str  # changes whenever the container (re)starts


@dataclass(frozen=True)
class AttachedNetwork:
    """One network a container is on: its address there, and the network's gateway."""

    name: str
    address: ipaddress.IPv4Interface  # the container's address, with the network's length
    gateway: ipaddress.IPv4Address | None  # None on networks without one

    @property
    def network(self) -> ipaddress.IPv4Network:
        return self.address.network


@dataclass(frozen=True)
class ContainerHealth:
    """What the container's own health check last said (compose.yaml, the images)."""

    status: str  # healthy, unhealthy, starting; "none" when the image has no check
    output: str  # the check's last output, one line ("" before its first run)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Runtime(Protocol):
    def replicas(self, service: str) -> list[Replica]:
        """Containers of `service` in this stack, ordered by replica number."""
        ...

    def refresh(self, replica: Replica) -> Replica | None:
        """The replica's current state, or None if the container is gone."""
        ...

    def exec(
        self,
        replica: Replica,
        argv: Sequence[str],
        *,
        environment: Mapping[str, str] | None = None,
        tty: bool = False,
    ) -> ExecResult:
        """Run `argv` inside the container (no shell) and wait for it."""
        ...

    def logs_since(self, replica: Replica, since: datetime) -> str:
        """The container's log lines written at or after `since` (UTC)."""
        ...

    def start(self, replica: Replica) -> None: ...

    def container_health(self, replica: Replica) -> ContainerHealth | None:
        """The container's health check state, None if the container is gone."""
        ...

    def addresses(self, replica: Replica) -> list[str]:
        """The container's IP addresses on its networks."""
        ...

    def networks(self, replica: Replica) -> list[AttachedNetwork]:
        """The networks the container is on, with its address on each."""
        ...

    def network_subnet(self, name: str) -> ipaddress.IPv4Network | None:
        """The subnet of this stack's network `name` (compose.yaml), None if unknown."""
        ...
