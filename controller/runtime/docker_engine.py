"""The Docker engine behind the `Runtime` protocol, through the Docker SDK for Python.

The controller finds its own stack through Compose's labels on its own container, so
`--scale postfix=2` replicas and custom project names need no configuration.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container

from controller.runtime import ExecResult, Replica, RuntimeUnavailable

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
        try:
            me = self._client.containers.get(socket.gethostname())
        except (NotFound, APIError) as exc:
            raise RuntimeUnavailable(
                "cannot tell which Compose project this controller belongs to; set "
                "MAILYARD_COMPOSE_PROJECT"
            ) from exc
        project = me.labels.get(PROJECT_LABEL)
        if not project:
            raise RuntimeUnavailable("the controller container has no Compose project label")
        return str(project)

    @staticmethod
    def _replica(container: Container) -> Replica:
        state = container.attrs.get("State", {})
        return Replica(
            id=str(container.id),
            name=str(container.name),
            service=str(container.labels.get(SERVICE_LABEL, "")),
            number=int(container.labels.get(NUMBER_LABEL, "1") or 1),
            running=bool(state.get("Running")) and not bool(state.get("Restarting")),
            restarting=bool(state.get("Restarting")),
            started_at=str(state.get("StartedAt", "")),
        )

    def replicas(self, service: str) -> list[Replica]:
        containers = self._client.containers.list(
            all=True,
            filters={"label": [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]},
        )
        return sorted((self._replica(c) for c in containers), key=lambda r: r.number)

    def refresh(self, replica: Replica) -> Replica | None:
        try:
            return self._replica(self._client.containers.get(replica.id))
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
        try:
            container = self._client.containers.get(replica.id)
            exit_code, output = container.exec_run(
                list(argv), environment=dict(environment or {}), tty=tty, demux=False
            )
        except (APIError, NotFound) as exc:
            return ExecResult(
                exit_code=125, output=f"cannot run {argv[0]} in {replica.name}: {exc}"
            )
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else ""
        return ExecResult(exit_code=int(exit_code if exit_code is not None else 125), output=text)

    def logs_since(self, replica: Replica, since: datetime) -> str:
        try:
            container = self._client.containers.get(replica.id)
            raw = container.logs(stdout=True, stderr=True, since=since, timestamps=False)
        except (APIError, NotFound) as exc:
            log.warning("cannot read the log of %s: %s", replica.name, exc)
            return ""
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""

    def start(self, replica: Replica) -> None:
        try:
            self._client.containers.get(replica.id).start()
        except (APIError, NotFound) as exc:
            log.warning("cannot start %s: %s", replica.name, exc)

    def addresses(self, replica: Replica) -> list[str]:
        try:
            container = self._client.containers.get(replica.id)
        except (APIError, NotFound):
            return []
        networks = container.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
        return [str(item["IPAddress"]) for item in networks.values() if item.get("IPAddress")]


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
