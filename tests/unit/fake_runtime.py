"""An in-memory stand-in for the Docker engine behind controller.runtime.Runtime.

It stands in for Docker only so that unit tests can check the apply pipeline's ordering
and bookkeeping; whether Postfix and Dovecot really validate, reload and pass their
health checks is proven by the stack tests (tests/stack) against the real images.

Each fake container keeps what the real one would: the release its own
/etc/mailyard/active link points at, and the release its daemon last (re)loaded. The
commands are those of images/common/activate-release.sh, images/*/validate.sh and
images/*/healthcheck.sh, answered from the rendered-config directory the controller
writes (settings.config_dir), which the containers would mount.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from controller.runtime import AttachedNetwork, ContainerHealth, ExecResult, Replica
from controller.services import dovecot, postfix, postgrey
from controller.services.managed import ACTIVATE, ACTIVE_LINK, ManagedService
from controller.services.rendering import RELEASE_NAME, ReleaseStore

SERVICES = {
    postfix.SERVICE: postfix.POSTFIX,
    dovecot.SERVICE: dovecot.DOVECOT,
    postgrey.SERVICE: postgrey.POSTGREY,
}
VALIDATORS = {
    "mailyard-postfix-validate": postfix.SERVICE,
    "mailyard-dovecot-validate": dovecot.SERVICE,
    "mailyard-postgrey-validate": postgrey.SERVICE,
}

# (service, the staged release's files by path) -> what the daemon's checker says is wrong
Checker = Callable[[str, Mapping[str, str]], list[str]]
# (container) -> why its health check fails, or None when healthy
Health = Callable[["FakeContainer"], str | None]


class ControllerKilled(BaseException):
    """Raised from inside an exec to stop the controller mid-apply, as `docker kill`
    would: nothing in the engine catches it (BaseException, like SystemExit)."""


@dataclass
class FakeContainer:
    service: str
    number: int
    active: str | None = None  # where its /etc/mailyard/active link points
    loaded: str | None = None  # what its daemon runs (set by a start or a reload)
    running: bool = True
    restarting: bool = False
    starts: int = 1
    log: list[tuple[datetime, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"mailyard-{self.service}-{self.number}"

    def replica(self) -> Replica:
        return Replica(
            id=f"id-{self.name}",
            name=self.name,
            service=self.service,
            number=self.number,
            running=self.running and not self.restarting,
            restarting=self.restarting,
            started_at=f"start-{self.starts}",
        )

    def write_log(self, line: str) -> None:
        self.log.append((datetime.now(UTC), line))


class FakeRuntime:
    """Implements the Runtime protocol (controller/runtime/__init__.py) in memory."""

    def __init__(
        self,
        config_dir: Path,
        replicas: Mapping[str, int],
        *,
        services: Mapping[str, tuple[ManagedService, str]] | None = None,
    ) -> None:
        """`services`: more services than Postfix, Dovecot and postgrey, each with the
        command that validates it (answered like doveconf: messages, exit 89 on error)."""
        self.config_dir = config_dir
        self.services: dict[str, ManagedService] = dict(SERVICES)
        self.validators: dict[str, str] = dict(VALIDATORS)
        for name, (service, validator) in (services or {}).items():
            self.services[name] = service
            self.validators[validator] = name
        self.containers: dict[str, FakeContainer] = {}
        for service, count in replicas.items():
            for number in range(1, count + 1):
                container = FakeContainer(service, number)
                self.containers[container.name] = container
        # What each container's health check says (container name -> report); healthy
        # when absent.
        self.health_reports: dict[str, ContainerHealth] = {}
        # What `postqueue -j` prints in a Postfix container (None: not a command here).
        self.queue_json: str | None = None
        # Every exec, in order: (container name, argv).
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        # Behaviour the tests change:
        self.checker: Checker = lambda _service, _files: []
        self.warnings: Checker = lambda _service, _files: []
        self.health: Health = lambda _container: None
        self.crash_on_reload: Callable[[FakeContainer], bool] = lambda _container: False
        self.before_exec: Callable[[FakeContainer, tuple[str, ...]], None] = lambda _c, _a: None
        self.reload_seconds = 0.0
        self.gate_seconds = 0.0
        # Execs that found a container's `active` link pointing at a deleted release.
        self.dangling: list[str] = []
        # The compose networks every container is on (the real stack has more).
        self.attached_networks: list[tuple[str, str]] = [
            ("mailyard_edge", "172.30.0.0/24"),
            ("mailyard_filter", "10.203.4.0/24"),
        ]

    # --- the Runtime protocol ---------------------------------------------------------
    def replicas(self, service: str) -> list[Replica]:
        found = [c for c in self.containers.values() if c.service == service]
        return [c.replica() for c in sorted(found, key=lambda c: c.number)]

    def refresh(self, replica: Replica) -> Replica | None:
        container = self.containers.get(replica.name)
        return container.replica() if container is not None else None

    def networks(self, replica: Replica) -> list[AttachedNetwork]:
        attached = []
        for index, (name, cidr) in enumerate(self.attached_networks):
            network = ipaddress.IPv4Network(cidr)
            attached.append(
                AttachedNetwork(
                    name=name,
                    address=ipaddress.IPv4Interface(
                        f"{network[2 + replica.number]}/{network.prefixlen}"
                    ),
                    gateway=network[1] if index == 0 else None,
                )
            )
        return attached

    def addresses(self, replica: Replica) -> list[str]:
        return [str(item.address.ip) for item in self.networks(replica)]

    def network_subnet(self, name: str) -> ipaddress.IPv4Network | None:
        return ipaddress.IPv4Network("10.203.6.0/24") if name == "lists" else None

    def exec(
        self,
        replica: Replica,
        argv: Sequence[str],
        *,
        environment: Mapping[str, str] | None = None,
        tty: bool = False,
    ) -> ExecResult:
        container = self.containers[replica.name]
        command = tuple(argv)
        self.calls.append((container.name, command))
        self._check_links()
        if not container.running or container.restarting:
            return ExecResult(125, f"container {container.name} is not running")
        self.before_exec(container, command)
        return self._dispatch(container, command)

    def logs_since(self, replica: Replica, since: datetime) -> str:
        container = self.containers[replica.name]
        return "".join(f"{line}\n" for at, line in container.log if at >= since)

    def start(self, replica: Replica) -> None:
        self._restart(self.containers[replica.name])

    def container_health(self, replica: Replica) -> ContainerHealth | None:
        container = self.containers.get(replica.name)
        if container is None:
            return None
        return self.health_reports.get(container.name, ContainerHealth("healthy", "ok"))

    # --- what the tests look at ---------------------------------------------------------
    def container(self, service: str, number: int) -> FakeContainer:
        return self.containers[f"mailyard-{service}-{number}"]

    def committed(self, service: str) -> str | None:
        return ReleaseStore(self.config_dir / service).current_name()

    def ops(self, *, reads: bool = False) -> list[tuple[str, str]]:
        """The calls as (container, verb), verbs being activate:<release>, reload, gate,
        validate and (with `reads`) readlink."""
        verbs = []
        for name, argv in self.calls:
            service = self.services[self.containers[name].service]
            if argv[0] == ACTIVATE:
                verbs.append((name, f"activate:{argv[1] if len(argv) > 1 else 'current'}"))
            elif argv == service.reload:
                verbs.append((name, "reload"))
            elif argv == service.gate:
                verbs.append((name, "gate"))
            elif argv[0] in self.validators:
                verbs.append((name, "validate"))
            elif reads:
                verbs.append((name, argv[0]))
        return verbs

    # --- the commands ----------------------------------------------------------------
    def _dispatch(self, container: FakeContainer, command: tuple[str, ...]) -> ExecResult:
        service = self.services[container.service]
        simple: dict[tuple[str, ...], Callable[[FakeContainer], ExecResult]] = {
            ("readlink", ACTIVE_LINK): self._readlink,
            service.reload: self._reload,
            service.gate: self._gate,
        }
        if command == ("postqueue", "-j") and self.queue_json is not None:
            return ExecResult(0, self.queue_json)
        if command[0] == ACTIVATE:
            return self._activate(container, command[1:])
        if command in simple:
            return simple[command](container)
        if self.validators.get(command[0]) == container.service:
            return self._validate(container, command)
        return ExecResult(127, f"{command[0]}: command not found")

    def _readlink(self, container: FakeContainer) -> ExecResult:
        if container.active is None:
            return ExecResult(1, "")
        return ExecResult(0, f"/etc/mailyard/{container.service}/releases/{container.active}\n")

    def _gate(self, container: FakeContainer) -> ExecResult:
        time.sleep(self.gate_seconds)
        problem = self.health(container)
        return ExecResult(1, problem) if problem else ExecResult(0, "")

    def _check_links(self) -> None:
        for container in self.containers.values():
            if (
                container.active is not None
                and not self._release_dir(container.service, container.active).is_dir()
            ):
                self.dangling.append(f"{container.name} -> {container.active}")

    def _release_dir(self, service: str, name: str) -> Path:
        return self.config_dir / service / "releases" / name

    def _activate(self, container: FakeContainer, args: tuple[str, ...]) -> ExecResult:
        release = args[0] if args else self.committed(container.service)
        if release is None or not RELEASE_NAME.match(release):
            return ExecResult(2, f"not a release name: {release}")
        if not self._release_dir(container.service, release).is_dir():
            return ExecResult(1, f"no release {release} in /etc/mailyard/{container.service}")
        container.active = release
        return ExecResult(0, f"{release}\n")

    def _reload(self, container: FakeContainer) -> ExecResult:
        time.sleep(self.reload_seconds)
        container.loaded = container.active
        if self.crash_on_reload(container):
            container.write_log(f"{container.service}: fatal: cannot run this configuration")
            self._restart(container)  # the restart policy brings it back
        return ExecResult(0, "")

    def _restart(self, container: FakeContainer) -> None:
        # The entrypoint runs `mailyard-activate` without a release: the committed one.
        container.starts += 1
        container.running = True
        container.restarting = False
        container.active = self.committed(container.service)
        container.loaded = container.active

    def _validate(self, container: FakeContainer, command: tuple[str, ...]) -> ExecResult:
        prefix = f"/etc/mailyard/{container.service}/releases/"
        path = command[1].removesuffix("/dovecot.conf").removesuffix(f"/{postgrey.ARGS_FILE}")
        name = path.removeprefix(prefix)
        base = self._release_dir(container.service, name)
        if not path.startswith(prefix) or not base.is_dir():
            return ExecResult(1, f"ERROR no release at {command[1]}")
        files = {
            str(item.relative_to(base)): item.read_text()
            for item in base.rglob("*")
            if item.is_file()
        }
        errors = self.checker(container.service, files)
        warnings = self.warnings(container.service, files)
        if container.service == postfix.SERVICE:
            # Like validate.sh: warnings as lines; a refused restriction shows as a failed
            # probe whose reasons smtpd logs under the probe's name.
            probe = command[2]
            lines = [f"WARNING {text}" for text in warnings]
            if errors:
                lines.append("PROBE-FAILED smtpd_helo_restrictions")
                for text in errors:
                    container.write_log(f"postfix/{probe}[99]: warning: {text}")
                container.write_log(f"postfix/{probe}[99]: disconnect from unknown[192.0.2.1]")
            return ExecResult(1 if errors else 0, "".join(f"{line}\n" for line in lines))
        # Like doveconf -n: messages on stderr, exit 89 on a fatal error.
        lines = [f"doveconf: Warning: {text}" for text in warnings]
        lines += [f"doveconf: Fatal: {text}" for text in errors]
        return ExecResult(89 if errors else 0, "".join(f"{line}\n" for line in lines))
