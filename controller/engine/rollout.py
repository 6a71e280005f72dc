"""Rolling a release out to a service's containers: stage, validate with the daemon's own
checker, then per replica activate, reload and wait for the protocol-level health gate,
and roll back every touched replica when a gate fails.

Nothing here records or decides anything: ConfigEngine (engine/apply.py) says what to
roll out and keeps the records (engine/records.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.engine.replicas import Replicas
from controller.runtime import Replica, Runtime
from controller.services.managed import ACTIVATE, ManagedService
from controller.services.rendering import Release, ReleaseStore, digest_of

log = logging.getLogger(__name__)

# A reload without a new release has no rendered release to show.
NO_RELEASE = Release(service="", files=())


@dataclass
class ReplicaStep:
    container: str
    from_release: str | None
    to_release: str
    reload_ms: int = 0
    gate_ms: int = 0
    outcome: str = "pending"
    message: str = ""


@dataclass
class ServiceRollout:
    service: ManagedService
    store: ReleaseStore
    release: Release
    target: str  # release directory name
    committed: str | None
    reasons: list[str] = field(default_factory=list)
    steps: list[ReplicaStep] = field(default_factory=list)

    @property
    def needed(self) -> bool:
        return bool(self.reasons)

    def summary(self) -> dict[str, Any]:
        return {
            "from_release": self.committed,
            "to_release": self.target,
            "reasons": self.reasons,
            "replicas": [asdict(step) for step in self.steps],
        }


Touched = list[tuple[ServiceRollout, Replica, str | None]]


class GateFailed(Exception):
    """A replica did not come up healthy on its new release; `touched` are the replicas
    switched so far (to roll back)."""

    def __init__(self, message: str, touched: Touched):
        super().__init__(message)
        self.message = message
        self.touched = touched


@dataclass(frozen=True)
class Refused:
    """A service's checker refused its staged release."""

    service: str
    errors: list[str]

    @property
    def message(self) -> str:
        return f"{self.service} refused the new configuration: " + "; ".join(self.errors)


def ms_since(began: float) -> int:
    return int((time.monotonic() - began) * 1000)


class Rollout(Replicas):
    """Talks to the services' containers through the runtime (None: no Docker engine)."""

    def __init__(self, runtime: Runtime | None, *, gate_timeout: float, settle: float) -> None:
        super().__init__(runtime)
        self.gate_timeout = gate_timeout
        self.settle = settle

    # --- stage and validate ----------------------------------------------------------

    def stage(
        self,
        services: Sequence[ManagedService],
        releases: dict[str, Release],
        config_dir: Path,
    ) -> list[ServiceRollout]:
        """Write the desired releases (not live) and work out which services need them."""
        rollouts = []
        for service in services:
            store = ReleaseStore(config_dir / service.name)
            release = releases[service.name]
            committed = store.current_name()
            unchanged = committed is not None and digest_of(committed) == release.digest
            if unchanged and committed is not None and not store.damage(committed):
                name = committed
            else:
                name = store.write(release)
            rollout = ServiceRollout(service, store, release, name, committed)
            if committed is None:
                rollout.reasons.append("first release")
            elif not unchanged:
                rollout.reasons.append("rendered files changed")
            elif committed != name:
                damage = "; ".join(store.damage(committed))
                rollout.reasons.append(f"release {committed} was edited by hand ({damage})")
            if unchanged:
                for replica, active in self.running_with_release(service):
                    if active != name:
                        rollout.reasons.append(f"{replica.name} runs release {active}, not {name}")
            rollouts.append(rollout)
        return rollouts

    def validate(
        self, needed: Sequence[ServiceRollout], *, strict: bool
    ) -> tuple[list[str], Refused | None]:
        """Each staged release checked by its daemon inside a running container of the
        service: the daemons' warnings, and the first refusal (None when all passed)."""
        warnings: list[str] = []
        for rollout in needed:
            replica = self.validation_replica(rollout.service, strict=strict)
            if replica is None:
                continue
            result = rollout.service.validate(
                self.require_runtime(), replica, rollout.service.release_path(rollout.target)
            )
            warnings.extend(f"{rollout.service.name}: {text}" for text in result.warnings)
            if not result.ok:
                return warnings, Refused(rollout.service.name, result.errors)
        return warnings, None

    def discard_staged(self, needed: Sequence[ServiceRollout]) -> None:
        """Remove staged releases that never went live (and that no container runs)."""
        for rollout in needed:
            if rollout.target == rollout.committed:
                continue
            if rollout.target in self.replica_releases(rollout.service).values():
                continue
            rollout.store.remove(rollout.target)

    def commit(self, needed: Sequence[ServiceRollout]) -> None:
        """Containers (re)started from now on run the new releases; old ones no replica
        runs are pruned."""
        for rollout in needed:
            rollout.store.activate(rollout.target)
            in_use = frozenset(
                name for name in self.replica_releases(rollout.service).values() if name
            )
            rollout.store.prune(in_use=in_use)

    # --- go live -----------------------------------------------------------------------

    def roll_out(self, needed: Sequence[ServiceRollout], *, reload_all: bool = False) -> None:
        """Per service in order, per replica: activate, reload, gate. Raises GateFailed."""
        touched: Touched = []
        for rollout in needed:
            for replica, active in self.running_with_release(rollout.service):
                # After a crash, a replica may point at the target without having been
                # reloaded and gated: recovery reloads every replica.
                if active == rollout.target and not reload_all:
                    continue
                step = ReplicaStep(replica.name, active, rollout.target)
                rollout.steps.append(step)
                touched.append((rollout, replica, active))
                self._go_live(rollout, replica, step, touched)

    def _go_live(
        self, rollout: ServiceRollout, replica: Replica, step: ReplicaStep, touched: Touched
    ) -> None:
        runtime = self.require_runtime()
        switched = runtime.exec(replica, [ACTIVATE, rollout.target])
        if not switched.ok:
            step.outcome = "failed"
            step.message = switched.output.strip()
            raise GateFailed(f"{replica.name}: {step.message}", touched)
        began = time.monotonic()
        reloaded_at = datetime.now(UTC) - timedelta(seconds=1)
        reloaded = runtime.exec(replica, list(rollout.service.reload))
        step.reload_ms = ms_since(began)
        if not reloaded.ok:
            step.outcome = "failed"
            step.message = reloaded.output.strip()
            raise GateFailed(f"{replica.name}: reload failed: {step.message}", touched)
        began = time.monotonic()
        problem = self.gate(rollout.service, replica, rollout.target)
        step.gate_ms = ms_since(began)
        if problem:
            step.outcome = "gate_failed"
            step.message = problem + daemon_errors(runtime, replica, reloaded_at)
            raise GateFailed(f"{replica.name}: {step.message}", touched)
        step.outcome = "ok"
        log.info(
            "%s: release %s live (reload %d ms, gate %d ms)",
            replica.name,
            rollout.target,
            step.reload_ms,
            step.gate_ms,
        )

    def gate(self, service: ManagedService, replica: Replica, expected: str) -> str | None:
        """None when the replica serves its protocols on release `expected`; otherwise
        why not. A container that exited or restarted since the reload failed, even if
        it is healthy again: it restarted on the committed (old) release."""
        runtime = self.require_runtime()
        time.sleep(self.settle)
        deadline = time.monotonic() + self.gate_timeout
        last = "no answer yet"
        while True:
            now = runtime.refresh(replica)
            if now is None:
                return "the container disappeared"
            if now.started_at != replica.started_at or now.restarting or not now.running:
                return (
                    "the service stopped after the reload (it could not run this "
                    "configuration; see its log)"
                )
            result = runtime.exec(replica, list(service.gate))
            if result.ok:
                active = self.active(replica)
                if active == expected:
                    return None
                last = f"runs release {active}, expected {expected}"
            else:
                last = result.output.strip() or f"health check exited {result.exit_code}"
            if time.monotonic() > deadline:
                return f"health gate failed for {self.gate_timeout:.0f}s: {last}"
            time.sleep(0.5)

    def roll_back(self, touched: Touched) -> list[str]:
        """Move every touched replica back to the release it ran, newest first."""
        problems: list[str] = []
        runtime = self.require_runtime()
        for rollout, replica, previous in reversed(touched):
            restore = previous or rollout.committed
            current = self._wait_running(replica)
            if current is None:
                problems.append(f"{replica.name} is not running")
                continue
            if restore is None:
                continue
            if self.active(current) != restore:
                runtime.exec(current, [ACTIVATE, restore])
            runtime.exec(current, list(rollout.service.reload))
            problem = self.gate(rollout.service, current, restore)
            if problem:
                problems.append(f"{replica.name}: {problem}")
            else:
                log.info("%s: rolled back to release %s", replica.name, restore)
        return problems

    def _wait_running(self, replica: Replica) -> Replica | None:
        runtime = self.require_runtime()
        deadline = time.monotonic() + self.gate_timeout
        started = False
        while True:
            current = runtime.refresh(replica)
            if current is None:
                return None
            if current.running:
                return current
            if not current.restarting and not started:
                runtime.start(current)  # exited and not restarted by its policy
                started = True
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)


def daemon_errors(runtime: Runtime, replica: Replica, since: datetime) -> str:
    """The daemon's own fatal/error lines logged since the reload, to explain a gate
    failure (e.g. "fatal: bind 192.0.2.55 port 25: Cannot assign requested address")."""
    marks = ("fatal:", "Fatal:", "panic:", "Panic:", "Error:")
    lines = [
        line.strip()
        for line in runtime.logs_since(replica, since).splitlines()
        if any(mark in line for mark in marks)
    ]
    return (": " + " | ".join(lines[-3:])) if lines else ""
