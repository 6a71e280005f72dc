"""The Docker engine behind the `Runtime` protocol, through the Docker SDK for Python.

The controller finds its own stack through Compose's labels on its own container, so
`--scale postfix=2` replicas and custom project names need no configuration.

In the stack the controller has no Docker socket: it talks to the Docker filter
(images/docker-proxy), which passes on only calls that name one of this project's
managed containers by name. So every call here addresses a container by its name, never
by its id, and the list of containers is read without inspecting each one by id.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import docker
from docker.errors import APIError, DockerException, NotFound

from controller.runtime import (
    AttachedNetwork,
    ContainerHealth,
    ExecResult,
    Replica,
    RuntimeUnavailable,
)

log = logging.getLogger(__name__)

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"


class DockerRuntime:
    def __init__(self, project: str | None = None, *, timeout: float = 120.0) -> None:
        try:
            self._client = docker.from_env(timeout=int(timeout))
            self._client.ping()
        except DockerException as exc:
            raise RuntimeUnavailable(
                "the controller cannot reach the Docker engine; mount /var/run/docker.sock "
                f"into the controller container ({exc})"
            ) from exc
        self.project = project or self._own_project()

    def _own_project(self) -> str:
        # The container list (with its labels) is readable through the filter; inspecting
        # the controller's own container is not.
        try:
            mine = self._client.api.containers(all=True, filters={"id": socket.gethostname()})
        except (NotFound, APIError) as exc:
            raise RuntimeUnavailable(
                "cannot tell which Compose project this controller belongs to; set "
                "MAILYARD_COMPOSE_PROJECT"
            ) from exc
        project = (mine[0].get("Labels") or {}).get(PROJECT_LABEL) if len(mine) == 1 else None
        if not project:
            raise RuntimeUnavailable("the controller container has no Compose project label")
        return str(project)

    def _inspect(self, name: str) -> dict[str, Any]:
        return dict(self._client.api.inspect_container(name))

    @staticmethod
    def _replica(attrs: Mapping[str, Any]) -> Replica:
        state = attrs.get("State", {})
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        return Replica(
            id=str(attrs.get("Id", "")),
            name=str(attrs.get("Name", "")).lstrip("/"),
            service=str(labels.get(SERVICE_LABEL, "")),
            number=int(labels.get(NUMBER_LABEL, "1") or 1),
            running=bool(state.get("Running")) and not bool(state.get("Restarting")),
            restarting=bool(state.get("Restarting")),
            started_at=str(state.get("StartedAt", "")),
        )

    def replicas(self, service: str) -> list[Replica]:
        listed = self._client.api.containers(
            all=True,
            filters={"label": [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]},
        )
        replicas = []
        for item in listed:
            # A list entry has no start time; the full one is read by name.
            names = item.get("Names") or []
            if not names:
                continue
            try:
                replicas.append(self._replica(self._inspect(str(names[0]).lstrip("/"))))
            except NotFound:
                continue  # removed meanwhile
        return sorted(replicas, key=lambda r: r.number)

    def refresh(self, replica: Replica) -> Replica | None:
        try:
            return self._replica(self._inspect(replica.name))
        except NotFound:
            return None

    def exec(
        self,
        replica: Replica,
        argv: Sequence[str],
        *,
        environment: Mapping[str, str] | None = None,
        tty: bool = False,
    ) -> ExecResult:
        api = self._client.api
        try:
            created = api.exec_create(
                replica.name, list(argv), environment=dict(environment or {}), tty=tty
            )
            output = api.exec_start(created["Id"], tty=tty, demux=False)
            exit_code = api.exec_inspect(created["Id"]).get("ExitCode")
        except (APIError, NotFound) as exc:
            return ExecResult(
                exit_code=125, output=f"cannot run {argv[0]} in {replica.name}: {exc}"
            )
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else ""
        return ExecResult(exit_code=int(exit_code if exit_code is not None else 125), output=text)

    def logs_since(self, replica: Replica, since: datetime) -> str:
        try:
            raw = self._client.api.logs(
                replica.name, stdout=True, stderr=True, since=since, timestamps=False
            )
        except (APIError, NotFound) as exc:
            log.warning("cannot read the log of %s: %s", replica.name, exc)
            return ""
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""

    def start(self, replica: Replica) -> None:
        try:
            self._client.api.start(replica.name)
        except (APIError, NotFound) as exc:
            log.warning("cannot start %s: %s", replica.name, exc)

    def container_health(self, replica: Replica) -> ContainerHealth | None:
        try:
            state = self._inspect(replica.name).get("State") or {}
        except (APIError, NotFound):
            return None
        health = state.get("Health") or {}
        runs = health.get("Log") or []
        output = str(runs[-1].get("Output", "")) if runs else ""
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        return ContainerHealth(
            status=str(health.get("Status") or "none"), output=lines[-1] if lines else ""
        )

    def addresses(self, replica: Replica) -> list[str]:
        # The public (edge) address first: the controller reads public ports there.
        networks = sorted(self.networks(replica), key=lambda n: not n.name.endswith("_edge"))
        return [str(network.address.ip) for network in networks]

    def network_subnet(self, name: str) -> ipaddress.IPv4Network | None:
        # Compose names it <project>_<name> (v2 and 1.29 alike).
        try:
            attrs = self._client.api.inspect_network(f"{self.project}_{name}")
        except (APIError, NotFound) as exc:
            log.warning("cannot read the %s network of this stack: %s", name, exc)
            return None
        for config in (attrs.get("IPAM") or {}).get("Config") or []:
            subnet = str(config.get("Subnet", ""))
            if subnet and ":" not in subnet:
                return ipaddress.IPv4Network(subnet)
        return None

    def networks(self, replica: Replica) -> list[AttachedNetwork]:
        try:
            attrs = self._inspect(replica.name)
        except (APIError, NotFound):
            return []
        attached = attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
        networks = []
        for name, item in sorted(attached.items()):
            if not item.get("IPAddress"):
                continue
            networks.append(
                AttachedNetwork(
                    name=str(name),
                    address=ipaddress.IPv4Interface(f"{item['IPAddress']}/{item['IPPrefixLen']}"),
                    gateway=(
                        ipaddress.IPv4Address(item["Gateway"]) if item.get("Gateway") else None
                    ),
                )
            )
        return networks


def connect(project: str | None = None) -> DockerRuntime | None:
    """The runtime, or None (logged) when there is no Docker socket, e.g. in unit tests."""
    if not os.path.exists("/var/run/docker.sock") and not os.environ.get("DOCKER_HOST"):
        log.warning(
            "no Docker socket: configuration changes cannot be validated or applied; "
            "mount /var/run/docker.sock into the controller"
        )
        return None
    try:
        return DockerRuntime(project)
    except RuntimeUnavailable as exc:
        log.warning("%s", exc)
        return None
