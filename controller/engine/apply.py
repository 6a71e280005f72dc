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

import ipaddress
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from controller.domain.mail_settings import MailSettings, build, refuse_trusting_stack_networks
from controller.domain.mail_settings import storable as storable_settings
from controller.domain.pagination import Page, PageRequest
from controller.domain.setting_rows import load_stored, save_stored
from controller.engine.certificates import self_signed_for
from controller.engine.desired import desired_releases, secret_values
from controller.engine.locking import ApplyLock
from controller.engine.reconcile import recover_interrupted
from controller.engine.records import ApplyMeta, ApplyRecords
from controller.engine.rollout import NO_RELEASE, GateFailed, Rollout, ServiceRollout
from controller.engine.settings_change import propose, service_plan, setting_changes
from controller.errors import InvalidInput, Unavailable
from controller.runtime import Runtime
from controller.services import postfix
from controller.services.mailman_routing import enable_list_routing
from controller.services.managed import LearnedState, ManagedService
from controller.services.registry import REGISTRY, enabled_services
from controller.services.rendering import ReleaseStore
from controller.settings import Settings

log = logging.getLogger(__name__)

# How long a change waits for another apply (or a reconcile pass) to finish.
LOCK_WAIT = 120.0


class ApplyFailed(InvalidInput):
    """The change validated but did not survive the health gate; it was rolled back."""


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
        registry: Sequence[ManagedService] = REGISTRY,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.runtime = runtime
        self.registry = tuple(registry)
        self.rollout = Rollout(
            runtime,
            gate_timeout=gate_timeout if gate_timeout is not None else settings.gate_timeout,
            settle=settle,
        )
        self.records = ApplyRecords(sessions)
        self.lock = ApplyLock(settings.state_dir)
        # Releases that were refused or failed their gate: a permanent failure, not
        # retried by the periodic reconcile until the desired releases change.
        self._failed_targets: set[tuple[str, ...]] = set()
        self.learned = LearnedState(settings.mailman_routing, settings.list_network)

    @property
    def services(self) -> tuple[ManagedService, ...]:
        return enabled_services(self.settings, self.registry)

    # --- settings ---------------------------------------------------------------------

    def first_start_defaults(self) -> dict[str, Any]:
        return {"hostname": self.settings.hostname, "relayhost": self.settings.relayhost}

    def current_settings(self) -> MailSettings:
        with self.sessions() as session:
            return build(load_stored(session), self.first_start_defaults())

    def change_settings(
        self,
        values: Mapping[str, Any],
        *,
        replace: bool,
        actor: str,
        token_id: int | None = None,
    ) -> dict[str, Any] | None:
        """Validate, apply and record a settings change; None when nothing changed."""
        with self.lock.exclusive(wait=LOCK_WAIT):
            with self.sessions() as session:
                stored = load_stored(session)
            defaults = self.first_start_defaults()
            old = build(stored, defaults)
            new = propose(stored, values, replace=replace, defaults=defaults)
            after = storable_settings(new, defaults)
            if after == stored:
                return None
            if new.mynetworks != old.mynetworks:
                refuse_trusting_stack_networks(new.mynetworks, self._postfix_networks())
            meta = ApplyMeta(actor, token_id, "api", setting_changes(old, new), stored)
            return self._apply(new, meta, stored_after=after)

    def plan(
        self, values: Mapping[str, Any] | None = None, *, replace: bool = False
    ) -> dict[str, Any]:
        """Per service, the unified diff between what runs and what would run. Writes
        nothing."""
        with self.sessions() as session:
            stored = load_stored(session)
        defaults = self.first_start_defaults()
        old = build(stored, defaults)
        new = propose(stored, values or {}, replace=replace, defaults=defaults)
        self._learn_list_network()
        releases = desired_releases(self.settings, new, self.learned, self.registry)
        secrets = secret_values(self.settings, old, self.registry) + secret_values(
            self.settings, new, self.registry
        )
        services = {
            service.name: service_plan(
                service,
                releases[service.name],
                ReleaseStore(self.settings.config_dir / service.name),
                self.rollout.replica_releases(service),
                secrets,
            )
            for service in self.services
        }
        return {"changes": setting_changes(old, new), "services": services}

    # --- reconcile ---------------------------------------------------------------------

    def reconcile(self, trigger: str = "reconcile") -> dict[str, Any] | None:
        """Bring every container to the desired release; None when all were already
        there. Also finishes or undoes applies a killed controller left in progress."""
        with self.lock.exclusive(wait=0 if trigger == "reconcile" else LOCK_WAIT):
            recover_interrupted(self.records, self._reconcile_locked, self._restore_settings)
            return self._reconcile_locked(trigger)

    def _restore_settings(self, stored: Mapping[str, Any]) -> None:
        with self.sessions.begin() as session:
            save_stored(session, stored)

    def _reconcile_locked(self, trigger: str) -> dict[str, Any] | None:
        enable_list_routing(self.sessions, self.learned)
        with self.sessions() as session:
            stored = load_stored(session)
        target = build(stored, self.first_start_defaults())
        self_signed_for(self.settings.certs_dir, target.hostname)
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
        with self.lock.exclusive(wait=LOCK_WAIT):
            started = time.monotonic()
            with self.sessions() as session:
                stored = load_stored(session)
            meta = ApplyMeta(actor, None, trigger, changes, stored)
            rollouts = []
            for service in filter(which, self.services):
                store = ReleaseStore(self.settings.config_dir / service.name)
                committed = store.current_name()
                if committed is None:
                    continue
                rollout = ServiceRollout(service, store, NO_RELEASE, committed, committed)
                rollout.reasons.append(f"reload for {trigger}")
                rollouts.append(rollout)
            apply_id = self.records.begin(meta, rollouts, [])
            try:
                self.rollout.roll_out(rollouts, reload_all=True)
            except GateFailed as failure:
                undo()
                self._rolled_back(apply_id, failure, rollouts, started)
                raise ApplyFailed(
                    f"rolled back: {failure.message}", extra={"apply_id": apply_id}
                ) from None
            self.records.finish(apply_id, "succeeded", rollouts=rollouts, started=started)
            return self.records.get(apply_id)

    def _stage(self, target: MailSettings) -> list[ServiceRollout]:
        self._learn_list_network()
        releases = desired_releases(self.settings, target, self.learned, self.registry)
        return self.rollout.stage(self.services, releases, self.settings.config_dir)

    def _apply(
        self,
        target: MailSettings,
        meta: ApplyMeta,
        *,
        stored_after: Mapping[str, Any],
        staged: list[ServiceRollout] | None = None,
    ) -> dict[str, Any]:
        started = time.monotonic()
        rollouts = staged if staged is not None else self._stage(target)
        needed = [rollout for rollout in rollouts if rollout.needed]
        key = tuple(rollout.target for rollout in rollouts)
        try:
            warnings, refused = self.rollout.validate(needed, strict=meta.trigger == "api")
        except Unavailable:
            self.rollout.discard_staged(needed)
            raise
        if refused is not None:
            self.rollout.discard_staged(needed)
            self._failed_targets.add(key)
            apply_id = self.records.ended(
                meta, "invalid", rollouts, warnings, error=refused.message, started=started
            )
            raise InvalidInput(refused.message, extra={"apply_id": apply_id})

        # A new hostname needs its own self-signed certificate (if ours is in use); the
        # old one comes back if the change does not go live.
        restore_certificate = self_signed_for(self.settings.certs_dir, target.hostname)
        # Settings and the in-progress record in one transaction; then roll out.
        apply_id = self.records.begin(meta, rollouts, warnings, store=stored_after)
        try:
            self.rollout.roll_out(needed, reload_all=meta.trigger == "recovery")
        except GateFailed as failure:
            restore_certificate()
            self._restore_settings(meta.stored_before)
            self._rolled_back(apply_id, failure, rollouts, started)
            self._failed_targets.add(key)
            raise ApplyFailed(
                f"the new configuration was rolled back: {failure.message}",
                extra={"apply_id": apply_id},
            ) from None
        self.rollout.commit(needed)
        self._failed_targets.clear()
        self.records.finish(apply_id, "succeeded", rollouts=rollouts, started=started)
        return self.records.get(apply_id)

    def _rolled_back(
        self,
        apply_id: int,
        failure: GateFailed,
        rollouts: Sequence[ServiceRollout],
        started: float,
    ) -> None:
        problems = self.rollout.roll_back(failure.touched)
        error = failure.message
        if problems:
            error += "; while rolling back: " + "; ".join(problems)
        self.records.finish(
            apply_id, "rolled_back", error=error, rollouts=rollouts, started=started
        )

    # --- the stack ---------------------------------------------------------------------

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
                for replica in self.runtime.replicas(postfix.SERVICE)
                for attached in self.runtime.networks(replica)
            }
        )

    # --- records -----------------------------------------------------------------------

    def get_apply(self, apply_id: int) -> dict[str, Any]:
        return self.records.get(apply_id)

    def list_applies(self, page: PageRequest, status: str | None = None) -> Page[dict[str, Any]]:
        return self.records.list(page, status)
