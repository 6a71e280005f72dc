"""The apply pipeline: settings -> render -> validate in the daemon's image -> roll out
one replica at a time behind a health gate -> commit, or roll back.

Order of events for a change, and what a crash at each point leaves behind:
1. Render every service; a service whose files did not change is not touched.
2. Stage the new releases in the config volumes (not live: `current` and each
   container's `active` link still point at the old ones).
3. Validate each staged release inside a running container of its service with the
   daemon's own checker. A failure is answered 422 with the daemon's words; the live
   configuration is untouched.
4. In one transaction: store the new settings and an apply record `in_progress` holding
   the previous settings.
5. Per service in dependency order, per replica: move its `active` link, reload, and
   wait for the protocol-level health gate. A failed gate moves every touched replica
   back, reloads it, restores the previous settings and records `rolled_back`.
6. Commit: point the volume's `current` at the new releases (what containers start on)
   and record `succeeded`.
A controller killed between 4 and 6 finds the `in_progress` record at its next start and
finishes the apply (or, if that fails, restores the previous settings and rolls back).
Mail never waits for the controller: the daemons run from the volumes on their own.
"""

from __future__ import annotations

import difflib
import fcntl
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from controller.db.grants import grant_mailman_routing
from controller.db.models import ConfigApply, utcnow
from controller.domain.mail_settings import (
    SECRET_SETTINGS,
    MailSettings,
    build,
    public_values,
    refuse_trusting_stack_networks,
    storable,
)
from controller.domain.pagination import Page, PageRequest, paginate
from controller.domain.setting_rows import load_stored, save_stored
from controller.engine.desired import (
    LearnedState,
    desired_releases,
    managed_services,
    secret_values,
)
from controller.errors import Conflict, InvalidInput, NotFound, Unavailable
from controller.runtime import Replica, Runtime
from controller.services.certificates import ensure_certificate
from controller.services.certificates import restore as restore_certificate
from controller.services.certificates import snapshot as certificate_snapshot
from controller.services.managed import ACTIVATE, ACTIVE_LINK, ManagedService
from controller.services.postfix import SERVICE as POSTFIX_SERVICE
from controller.services.rendering import Release, ReleaseStore, digest_of
from controller.settings import Settings

log = logging.getLogger(__name__)

MASK = "********"
# How long a change waits for another apply (or a reconcile pass) to finish.
LOCK_WAIT = 120.0


class ApplyFailed(InvalidInput):
    """The change validated but did not survive the health gate; it was rolled back."""


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


@dataclass(frozen=True)
class ApplyMeta:
    """Who asked for an apply and what it changes, as recorded."""

    actor: str
    token_id: int | None
    trigger: str
    changes: list[dict[str, Any]]
    stored_before: Mapping[str, Any]


# A reload without a new release has no rendered release to show.
_NO_RELEASE = Release(service="", files=())


class _GateFailed(Exception):
    def __init__(self, message: str, touched: list[tuple[ServiceRollout, Replica, str | None]]):
        super().__init__(message)
        self.message = message
        self.touched = touched


class ConfigEngine:
    """Owns every change to the services' configuration; one apply at a time."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        runtime: Runtime | None,
        *,
        gate_timeout: float | None = None,
        settle: float = 1.0,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.runtime = runtime
        self.gate_timeout = gate_timeout if gate_timeout is not None else settings.gate_timeout
        self.settle = settle
        self._lock = threading.Lock()
        self._failed_targets: set[tuple[str, ...]] = set()
        self.learned = LearnedState(settings.mailman_routing, settings.list_network)

    # --- settings ---------------------------------------------------------------------

    def first_start_defaults(self) -> dict[str, Any]:
        return {"hostname": self.settings.hostname, "relayhost": self.settings.relayhost}

    def current_settings(self) -> MailSettings:
        with self.sessions() as session:
            return build(load_stored(session), self.first_start_defaults())

    def _propose(
        self, stored: Mapping[str, Any], values: Mapping[str, Any], *, replace: bool
    ) -> MailSettings:
        # A masked secret sent back unchanged (e.g. from a GET) means "keep it".
        values = {
            name: value
            for name, value in values.items()
            if not (name in SECRET_SETTINGS and value == MASK)
        }
        if replace:
            kept = {name: stored[name] for name in SECRET_SETTINGS if name in stored}
            merged = {**kept, **values}
        else:
            merged = {**stored, **values}
        # null resets a setting to its default.
        merged = {name: value for name, value in merged.items() if value is not None}
        return build(merged, self.first_start_defaults())

    def change_settings(
        self,
        values: Mapping[str, Any],
        *,
        replace: bool,
        actor: str,
        token_id: int | None = None,
    ) -> dict[str, Any] | None:
        """Validate, apply and record a settings change; None when nothing changed."""
        with self._exclusive(wait=LOCK_WAIT):
            with self.sessions() as session:
                stored = load_stored(session)
            old = build(stored, self.first_start_defaults())
            new = self._propose(stored, values, replace=replace)
            after = storable(new, self.first_start_defaults())
            if after == stored:
                return None
            if new.mynetworks != old.mynetworks:
                refuse_trusting_stack_networks(new.mynetworks, self._postfix_networks())
            meta = ApplyMeta(actor, token_id, "api", setting_changes(old, new), stored)
            return self._apply(new, meta, stored_after=after)

    # --- plan --------------------------------------------------------------------------

    def plan(
        self, values: Mapping[str, Any] | None = None, *, replace: bool = False
    ) -> dict[str, Any]:
        """Per service, the unified diff between what runs and what would run. Writes
        nothing."""
        with self.sessions() as session:
            stored = load_stored(session)
        old = build(stored, self.first_start_defaults())
        new = self._propose(stored, values or {}, replace=replace)
        self._learn_list_network()
        releases = desired_releases(self.settings, new, self.learned)
        redact = sorted(
            set(secret_values(self.settings, old) + secret_values(self.settings, new)),
            key=len,
            reverse=True,
        )
        services: dict[str, Any] = {}
        for service in managed_services(self.settings):
            store = ReleaseStore(self.settings.config_dir / service.name)
            release = releases[service.name]
            committed = store.current_name()
            running_files = store.read(committed) if committed else {}
            desired_files = {item.path: item.content for item in release.files}
            replicas = self._replica_releases(service)
            damage = store.damage(committed) if committed else []
            changed = (
                committed is None
                or digest_of(committed) != release.digest
                or bool(damage)
                or any(active != committed for active in replicas.values())
            )
            services[service.name] = {
                "running_release": committed,
                "desired_release": release.digest,
                "changed": changed,
                "replicas": replicas,
                "drift": damage,
                "diff": _diff(service.name, running_files, desired_files, redact),
            }
        return {"changes": setting_changes(old, new), "services": services}

    # --- reconcile ---------------------------------------------------------------------

    def reconcile(self, trigger: str = "reconcile") -> dict[str, Any] | None:
        """Bring every container to the desired release; None when all were already
        there. Also finishes or undoes applies a killed controller left in progress."""
        with self._exclusive(wait=0 if trigger == "reconcile" else LOCK_WAIT):
            self._recover_interrupted()
            return self._reconcile_locked(trigger)

    def _reconcile_locked(self, trigger: str) -> dict[str, Any] | None:
        self._enable_list_routing()
        with self.sessions() as session:
            stored = load_stored(session)
        target = build(stored, self.first_start_defaults())
        if ensure_certificate(self.settings.certs_dir, target.hostname):
            log.info("created a self-signed certificate for %s", target.hostname)
        rollouts = self._stage(target)
        if not any(rollout.needed for rollout in rollouts):
            return None
        key = tuple(rollout.target for rollout in rollouts)
        if trigger == "reconcile" and key in self._failed_targets:
            log.debug("not retrying releases %s: they failed before", key)
            return None
        meta = ApplyMeta(trigger, None, trigger, [], stored)
        return self._apply(target, meta, stored_after=stored, staged=rollouts)

    def ensure_list_routing(self) -> None:
        """Called when a list is created: if Postfix does not route list addresses yet
        (Mailman made its table after the last reconcile), do it now, so that mail to
        the new list is never refused as an unknown address."""
        if not self.learned.mailman_routing:
            self.reconcile(trigger="lists")

    def _enable_list_routing(self) -> None:
        """Postfix looks list addresses up in Mailman's table only once it may read it
        (a failing lookup would defer all mail); checked until Mailman has made it."""
        if self.learned.mailman_routing:
            return
        try:
            with self.sessions.begin() as session:
                ready = grant_mailman_routing(session.connection())
        except SQLAlchemyError as exc:
            log.warning("cannot enable list routing yet: %s", exc)
            return
        if ready:
            log.info("Mailman's list table is there: Postfix routes list addresses to Mailman")
            self.learned.mailman_routing = True

    def _recover_interrupted(self) -> None:
        with self.sessions.begin() as session:
            interrupted = list(
                session.scalars(select(ConfigApply).where(ConfigApply.status == "in_progress"))
            )
            for record in interrupted:
                record.status = "interrupted"
            pending = [(record.id, json.loads(record.previous_settings)) for record in interrupted]
        for apply_id, previous in pending:
            log.warning("apply %d was interrupted (controller restart); finishing it", apply_id)
            try:
                self._reconcile_locked("recovery")
            except InvalidInput as exc:
                log.warning(
                    "apply %d cannot be finished (%s); restoring the settings before it",
                    apply_id,
                    exc,
                )
                with self.sessions.begin() as session:
                    save_stored(session, previous)
                try:
                    self._reconcile_locked("recovery")
                except InvalidInput as undo_error:
                    self._finish(apply_id, "failed", error=f"{exc}; undo: {undo_error}")
                    continue
                self._finish(apply_id, "undone_after_restart", error=str(exc))
            else:
                self._finish(apply_id, "completed_after_restart")

    # --- the pipeline ------------------------------------------------------------------

    def reload_everywhere(
        self,
        *,
        actor: str,
        trigger: str,
        changes: list[dict[str, Any]],
        undo: Callable[[], None],
        which: Callable[[ManagedService], bool] = lambda _service: True,
    ) -> dict[str, Any]:
        """Reload every replica of every service `which` picks on its current release,
        health-gated: for files outside the releases (the certificate: only the services
        that use it). If a gate fails, `undo` puts the old files back and the touched
        replicas are reloaded again."""
        with self._exclusive(wait=LOCK_WAIT):
            started = time.monotonic()
            with self.sessions() as session:
                stored = load_stored(session)
            meta = ApplyMeta(actor, None, trigger, changes, stored)
            rollouts = []
            for service in filter(which, managed_services(self.settings)):
                store = ReleaseStore(self.settings.config_dir / service.name)
                committed = store.current_name()
                if committed is None:
                    continue
                rollout = ServiceRollout(service, store, _NO_RELEASE, committed, committed)
                rollout.reasons.append(f"reload for {trigger}")
                rollouts.append(rollout)
            with self.sessions.begin() as session:
                record = self._new_record(meta, "in_progress", rollouts, [])
                session.add(record)
                session.flush()
                apply_id = record.id
            try:
                self._roll_out(rollouts, reload_all=True)
            except _GateFailed as failure:
                undo()
                problems = self._roll_back(failure.touched)
                error = failure.message + (
                    "; while rolling back: " + "; ".join(problems) if problems else ""
                )
                self._finish(
                    apply_id, "rolled_back", error=error, rollouts=rollouts, started=started
                )
                raise ApplyFailed(
                    f"rolled back: {failure.message}", extra={"apply_id": apply_id}
                ) from None
            self._finish(apply_id, "succeeded", rollouts=rollouts, started=started)
            return self.get_apply(apply_id)

    def _stage(self, target: MailSettings) -> list[ServiceRollout]:
        """Write the desired releases (not live) and work out which services need them."""
        self._learn_list_network()
        releases = desired_releases(self.settings, target, self.learned)
        rollouts = []
        for service in managed_services(self.settings):
            store = ReleaseStore(self.settings.config_dir / service.name)
            release = releases[service.name]
            committed = store.current_name()
            if (
                committed is not None
                and digest_of(committed) == release.digest
                and not store.damage(committed)
            ):
                name = committed
            else:
                name = store.write(release)
            rollout = ServiceRollout(service, store, release, name, committed)
            if committed is None:
                rollout.reasons.append("first release")
            elif digest_of(committed) != release.digest:
                rollout.reasons.append("rendered files changed")
            elif committed != name:
                damage = "; ".join(store.damage(committed))
                rollout.reasons.append(f"release {committed} was edited by hand ({damage})")
            for replica, active in self._running_with_release(service):
                if (
                    active != name
                    and committed is not None
                    and digest_of(committed) == release.digest
                ):
                    rollout.reasons.append(f"{replica.name} runs release {active}, not {name}")
            rollouts.append(rollout)
        return rollouts

    def _apply(
        self,
        target: MailSettings,
        meta: ApplyMeta,
        *,
        stored_after: Mapping[str, Any],
        staged: list[ServiceRollout] | None = None,
    ) -> dict[str, Any]:
        started = time.monotonic()
        trigger = meta.trigger
        rollouts = staged if staged is not None else self._stage(target)
        needed = [rollout for rollout in rollouts if rollout.needed]
        try:
            warnings = self._validate(needed, meta, rollouts, started)
        except (InvalidInput, Unavailable):
            self._discard_staged(needed)
            raise

        # A new hostname needs its own self-signed certificate (if ours is in use); put
        # the old one back if the change does not go live.
        saved_certificate = certificate_snapshot(self.settings.certs_dir)
        if ensure_certificate(self.settings.certs_dir, target.hostname):
            log.info("created a self-signed certificate for %s", target.hostname)

        # 4. persist the settings together with the in-progress record
        with self.sessions.begin() as session:
            save_stored(session, stored_after)
            record = self._new_record(meta, "in_progress", rollouts, warnings)
            session.add(record)
            session.flush()
            apply_id = record.id

        # 5. roll out, one replica at a time, health-gated
        try:
            self._roll_out(needed, reload_all=trigger == "recovery")
        except _GateFailed as failure:
            restore_certificate(self.settings.certs_dir, saved_certificate)
            undo_messages = self._roll_back(failure.touched)
            with self.sessions.begin() as session:
                save_stored(session, meta.stored_before)
            error = failure.message
            if undo_messages:
                error += "; while rolling back: " + "; ".join(undo_messages)
            self._finish(apply_id, "rolled_back", error=error, rollouts=rollouts, started=started)
            self._failed_targets.add(tuple(rollout.target for rollout in rollouts))
            raise ApplyFailed(
                f"the new configuration was rolled back: {failure.message}",
                extra={"apply_id": apply_id},
            ) from None

        # 6. commit: containers (re)started from now on run the new releases
        for rollout in needed:
            rollout.store.activate(rollout.target)
            in_use = frozenset(
                name for name in self._replica_releases(rollout.service).values() if name
            )
            rollout.store.prune(in_use=in_use)
        self._failed_targets.clear()
        self._finish(apply_id, "succeeded", rollouts=rollouts, started=started)
        return self.get_apply(apply_id)

    def _validate(
        self,
        needed: Sequence[ServiceRollout],
        meta: ApplyMeta,
        rollouts: Sequence[ServiceRollout],
        started: float,
    ) -> list[str]:
        """Each staged release checked by its daemon inside a running container of the
        service; returns the daemons' warnings, raises InvalidInput with their errors."""
        warnings: list[str] = []
        for rollout in needed:
            replica = self._validation_replica(rollout.service, strict=meta.trigger == "api")
            if replica is None:
                continue
            result = rollout.service.validate(
                self._require_runtime(), replica, rollout.service.release_path(rollout.target)
            )
            warnings.extend(f"{rollout.service.name}: {text}" for text in result.warnings)
            if not result.ok:
                message = f"{rollout.service.name} refused the new configuration: " + "; ".join(
                    result.errors
                )
                # Not retried by the periodic reconcile until something changes.
                self._failed_targets.add(tuple(item.target for item in rollouts))
                apply_id = self._record(
                    meta, "invalid", rollouts, warnings, error=message, started=started
                )
                raise InvalidInput(message, extra={"apply_id": apply_id})
        return warnings

    def _discard_staged(self, needed: Sequence[ServiceRollout]) -> None:
        """Remove staged releases that never went live (and that no container runs)."""
        for rollout in needed:
            if rollout.target == rollout.committed:
                continue
            if rollout.target in self._replica_releases(rollout.service).values():
                continue
            rollout.store.remove(rollout.target)

    def _roll_out(self, needed: Sequence[ServiceRollout], *, reload_all: bool = False) -> None:
        touched: list[tuple[ServiceRollout, Replica, str | None]] = []
        for rollout in needed:
            for replica, active in self._running_with_release(rollout.service):
                # After a crash, a replica may point at the target without having been
                # reloaded and gated: recovery reloads every replica.
                if active == rollout.target and not reload_all:
                    continue
                step = ReplicaStep(replica.name, active, rollout.target)
                rollout.steps.append(step)
                touched.append((rollout, replica, active))
                runtime = self._require_runtime()
                switched = runtime.exec(replica, [ACTIVATE, rollout.target])
                if not switched.ok:
                    step.outcome = "failed"
                    step.message = switched.output.strip()
                    raise _GateFailed(f"{replica.name}: {step.message}", touched)
                began = time.monotonic()
                reloaded_at = datetime.now(UTC) - timedelta(seconds=1)
                reloaded = runtime.exec(replica, list(rollout.service.reload))
                step.reload_ms = _ms_since(began)
                if not reloaded.ok:
                    step.outcome = "failed"
                    step.message = reloaded.output.strip()
                    raise _GateFailed(f"{replica.name}: reload failed: {step.message}", touched)
                began = time.monotonic()
                problem = self._gate(rollout.service, replica, rollout.target)
                step.gate_ms = _ms_since(began)
                if problem:
                    step.outcome = "gate_failed"
                    step.message = problem + _daemon_errors(runtime, replica, reloaded_at)
                    raise _GateFailed(f"{replica.name}: {step.message}", touched)
                step.outcome = "ok"
                log.info(
                    "%s: release %s live (reload %d ms, gate %d ms)",
                    replica.name,
                    rollout.target,
                    step.reload_ms,
                    step.gate_ms,
                )

    def _gate(self, service: ManagedService, replica: Replica, expected: str) -> str | None:
        """None when the replica serves its protocols on release `expected`; otherwise
        why not. A container that exited or restarted since the reload failed, even if
        it is healthy again: it restarted on the committed (old) release."""
        runtime = self._require_runtime()
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
                active = self._active(replica)
                if active == expected:
                    return None
                last = f"runs release {active}, expected {expected}"
            else:
                last = result.output.strip() or f"health check exited {result.exit_code}"
            if time.monotonic() > deadline:
                return f"health gate failed for {self.gate_timeout:.0f}s: {last}"
            time.sleep(0.5)

    def _roll_back(self, touched: list[tuple[ServiceRollout, Replica, str | None]]) -> list[str]:
        """Move every touched replica back to the release it ran, newest first."""
        problems: list[str] = []
        runtime = self._require_runtime()
        for rollout, replica, previous in reversed(touched):
            restore = previous or rollout.committed
            current = self._wait_running(replica)
            if current is None:
                problems.append(f"{replica.name} is not running")
                continue
            if restore is None:
                continue
            if self._active(current) != restore:
                runtime.exec(current, [ACTIVATE, restore])
            runtime.exec(current, list(rollout.service.reload))
            problem = self._gate(rollout.service, current, restore)
            if problem:
                problems.append(f"{replica.name}: {problem}")
            else:
                log.info("%s: rolled back to release %s", replica.name, restore)
        return problems

    def _wait_running(self, replica: Replica) -> Replica | None:
        runtime = self._require_runtime()
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

    # --- containers --------------------------------------------------------------------

    def _learn_list_network(self) -> None:
        """OpenDKIM signs Mailman's list mail by its network (the `lists` network, whose
        subnet Docker chose): read it once, when it is not configured."""
        if self.learned.list_network is not None or self.runtime is None:
            return
        subnet = self.runtime.network_subnet("lists")
        if subnet is None:
            log.warning("the lists network is unknown: list mail will not be DKIM-signed")
            return
        self.learned.list_network = str(subnet)

    def _postfix_networks(self) -> list[tuple[str, ipaddress.IPv4Network]]:
        """The compose networks Postfix's containers are on (none without a runtime)."""
        if self.runtime is None:
            return []
        return sorted(
            {
                (attached.name, attached.network)
                for replica in self.runtime.replicas(POSTFIX_SERVICE)
                for attached in self.runtime.networks(replica)
            }
        )

    def _require_runtime(self) -> Runtime:
        if self.runtime is None:
            raise Unavailable(
                "the controller cannot reach the Docker engine, so it cannot validate or "
                "reload services; mount /var/run/docker.sock into the controller"
            )
        return self.runtime

    def _running(self, service: ManagedService) -> list[Replica]:
        if self.runtime is None:
            return []
        return [replica for replica in self.runtime.replicas(service.name) if replica.running]

    def _active(self, replica: Replica) -> str | None:
        result = self._require_runtime().exec(replica, ["readlink", ACTIVE_LINK])
        return result.output.strip().rsplit("/", 1)[-1] if result.ok else None

    def _running_with_release(self, service: ManagedService) -> list[tuple[Replica, str | None]]:
        return [(replica, self._active(replica)) for replica in self._running(service)]

    def _replica_releases(self, service: ManagedService) -> dict[str, str | None]:
        return {replica.name: active for replica, active in self._running_with_release(service)}

    def _validation_replica(self, service: ManagedService, *, strict: bool) -> Replica | None:
        if self.runtime is None:
            if strict:
                self._require_runtime()
            return None
        running = self._running(service)
        if running:
            return running[0]
        if strict and self.runtime.replicas(service.name):
            raise Unavailable(
                f"{service.name} is not running, so the change cannot be checked by "
                f"{service.name} itself; start it (docker compose start {service.name}) "
                "and try again. Nothing was changed."
            )
        return None

    # --- records -----------------------------------------------------------------------

    @contextmanager
    def _exclusive(self, *, wait: float) -> Iterator[None]:
        """One apply at a time: a thread lock for the API's worker threads and a file
        lock for `mailyard` commands running next to the server in the container. Waits
        up to `wait` seconds (an apply takes seconds), then answers 409."""
        busy = Conflict("another configuration change is being applied; retry shortly")
        deadline = time.monotonic() + wait
        acquired = (
            self._lock.acquire(timeout=wait) if wait > 0 else self._lock.acquire(blocking=False)
        )
        if not acquired:
            raise busy
        try:
            self.settings.state_dir.mkdir(parents=True, exist_ok=True)
            with open(self.settings.state_dir / "apply.lock", "a") as handle:
                while True:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise busy from None
                        time.sleep(0.2)
                yield
        finally:
            self._lock.release()

    @staticmethod
    def _new_record(
        meta: ApplyMeta, status: str, rollouts: Sequence[ServiceRollout], warnings: list[str]
    ) -> ConfigApply:
        return ConfigApply(
            actor=meta.actor,
            token_id=meta.token_id,
            trigger=meta.trigger,
            status=status,
            changes=json.dumps(meta.changes),
            previous_settings=json.dumps(dict(meta.stored_before)),
            services=json.dumps({r.service.name: r.summary() for r in rollouts if r.needed}),
            warnings=json.dumps(warnings),
        )

    def _record(
        self,
        meta: ApplyMeta,
        status: str,
        rollouts: Sequence[ServiceRollout],
        warnings: list[str],
        *,
        error: str,
        started: float,
    ) -> int:
        with self.sessions.begin() as session:
            record = self._new_record(meta, status, rollouts, warnings)
            record.error = error
            record.finished_at = utcnow()
            record.duration_ms = _ms_since(started)
            session.add(record)
            session.flush()
            return record.id

    def _finish(
        self,
        apply_id: int,
        status: str,
        *,
        error: str | None = None,
        rollouts: Sequence[ServiceRollout] | None = None,
        started: float | None = None,
    ) -> None:
        with self.sessions.begin() as session:
            record = session.get(ConfigApply, apply_id)
            if record is None:
                return
            record.status = status
            record.error = error
            record.finished_at = utcnow()
            if rollouts is not None:
                record.services = json.dumps(
                    {r.service.name: r.summary() for r in rollouts if r.needed}
                )
            if started is not None:
                record.duration_ms = _ms_since(started)
            elif record.started_at is not None:
                record.duration_ms = int(
                    (record.finished_at - record.started_at).total_seconds() * 1000
                )

    def get_apply(self, apply_id: int) -> dict[str, Any]:
        with self.sessions() as session:
            record = session.get(ConfigApply, apply_id)
            if record is None:
                raise NotFound(f"there is no apply {apply_id}")
            return apply_view(record)

    def list_applies(self, page: PageRequest, status: str | None = None) -> Page[dict[str, Any]]:
        query = select(ConfigApply).order_by(ConfigApply.id.desc())
        if status:
            query = query.where(ConfigApply.status == status)
        with self.sessions() as session:
            result = paginate(session, query, page)
            return Page(
                items=[apply_view(record) for record in result.items],
                total=result.total,
                limit=result.limit,
                offset=result.offset,
            )


def apply_view(record: ConfigApply) -> dict[str, Any]:
    """An apply as the API shows it (never the previous settings: they hold secrets)."""
    return {
        "id": record.id,
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "actor": record.actor,
        "trigger": record.trigger,
        "status": record.status,
        "changes": json.loads(record.changes),
        "services": json.loads(record.services),
        "warnings": json.loads(record.warnings),
        "error": record.error,
        "duration_ms": record.duration_ms,
    }


def setting_changes(old: MailSettings, new: MailSettings) -> list[dict[str, Any]]:
    before, after = public_values(old), public_values(new)
    changes = []
    for name in after:
        old_value, new_value = getattr(old, name), getattr(new, name)
        if isinstance(old_value, SecretStr) or isinstance(new_value, SecretStr):
            if _secret(old_value) == _secret(new_value):
                continue
            changes.append(
                {"name": name, "old": before[name], "new": after[name] and MASK + " (changed)"}
            )
        elif old_value != new_value:
            changes.append({"name": name, "old": before[name], "new": after[name]})
    return changes


def _secret(value: object) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else None


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def _diff(
    service: str, running: Mapping[str, bytes], desired: Mapping[str, bytes], secrets: Sequence[str]
) -> str:
    chunks: list[str] = []
    for path in sorted(set(running) | set(desired)):
        old_raw, new_raw = running.get(path, b""), desired.get(path, b"")
        if old_raw == new_raw:
            continue
        old = _redact(old_raw.decode("utf-8", "replace"), secrets)
        new = _redact(new_raw.decode("utf-8", "replace"), secrets)
        if old == new:
            chunks.append(f"# {service}/{path}: a secret value changed (not shown)\n")
            continue
        chunks.extend(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"running/{service}/{path}" if path in running else "/dev/null",
                tofile=f"desired/{service}/{path}" if path in desired else "/dev/null",
            )
        )
    return "".join(chunks)


def _daemon_errors(runtime: Runtime, replica: Replica, since: datetime) -> str:
    """The daemon's own fatal/error lines logged since the reload, to explain a gate
    failure (e.g. "fatal: bind 192.0.2.55 port 25: Cannot assign requested address")."""
    marks = ("fatal:", "Fatal:", "panic:", "Panic:", "Error:")
    lines = [
        line.strip()
        for line in runtime.logs_since(replica, since).splitlines()
        if any(mark in line for mark in marks)
    ]
    return (": " + " | ".join(lines[-3:])) if lines else ""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def _ms_since(began: float) -> int:
    return int((time.monotonic() - began) * 1000)


def start_reconcile_loop(engine: ConfigEngine, interval: float) -> threading.Thread:
    """Every `interval` seconds, correct drift (hand-edited files, a replica on another
    release). Errors are logged, never fatal: mail does not depend on this loop."""

    def loop() -> None:
        while True:
            time.sleep(interval)
            try:
                outcome = engine.reconcile()
            except Conflict:
                continue  # an apply is running; it ends in the desired state anyway
            except Exception:
                log.exception("reconcile failed; retrying in %.0fs", interval)
                continue
            if outcome is not None:
                log.warning(
                    "reconcile: drift corrected by apply %s (%s)", outcome["id"], outcome["status"]
                )

    thread = threading.Thread(target=loop, name="reconcile", daemon=True)
    thread.start()
    return thread
