"""Apply records (table config_applies): what each apply changed, who asked, how each
replica went, and how it ended; and how the API shows them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controller.db.models import ConfigApply, utcnow
from controller.domain.pagination import Page, PageRequest, paginate
from controller.domain.setting_rows import save_stored
from controller.engine.rollout import ServiceRollout, ms_since
from controller.errors import NotFound


@dataclass(frozen=True)
class ApplyMeta:
    """Who asked for an apply and what it changes, as recorded."""

    actor: str
    token_id: int | None
    trigger: str
    changes: list[dict[str, Any]]
    stored_before: Mapping[str, Any]


def _services(rollouts: Sequence[ServiceRollout]) -> str:
    return json.dumps({r.service.name: r.summary() for r in rollouts if r.needed})


class ApplyRecords:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @staticmethod
    def _new(
        meta: ApplyMeta, status: str, rollouts: Sequence[ServiceRollout], warnings: list[str]
    ) -> ConfigApply:
        return ConfigApply(
            actor=meta.actor,
            token_id=meta.token_id,
            trigger=meta.trigger,
            status=status,
            changes=json.dumps(meta.changes),
            previous_settings=json.dumps(dict(meta.stored_before)),
            services=_services(rollouts),
            warnings=json.dumps(warnings),
        )

    def begin(
        self,
        meta: ApplyMeta,
        rollouts: Sequence[ServiceRollout],
        warnings: list[str],
        *,
        store: Mapping[str, Any] | None = None,
    ) -> int:
        """An `in_progress` record, in one transaction with the settings to `store`: a
        controller killed from here on finds it at its next start (recovery)."""
        with self.sessions.begin() as session:
            if store is not None:
                save_stored(session, store)
            record = self._new(meta, "in_progress", rollouts, warnings)
            session.add(record)
            session.flush()
            return record.id

    def ended(
        self,
        meta: ApplyMeta,
        status: str,
        rollouts: Sequence[ServiceRollout],
        warnings: list[str],
        *,
        error: str,
        started: float,
    ) -> int:
        """A record of an apply that ended before it began (refused by a checker)."""
        with self.sessions.begin() as session:
            record = self._new(meta, status, rollouts, warnings)
            record.error = error
            record.finished_at = utcnow()
            record.duration_ms = ms_since(started)
            session.add(record)
            session.flush()
            return record.id

    def finish(
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
                record.services = _services(rollouts)
            if started is not None:
                record.duration_ms = ms_since(started)
            elif record.started_at is not None:
                record.duration_ms = int(
                    (record.finished_at - record.started_at).total_seconds() * 1000
                )

    def take_interrupted(self) -> list[tuple[int, dict[str, Any]]]:
        """Applies a killed controller left `in_progress`, marked `interrupted`: their ids
        and the settings from before each."""
        with self.sessions.begin() as session:
            interrupted = list(
                session.scalars(select(ConfigApply).where(ConfigApply.status == "in_progress"))
            )
            for record in interrupted:
                record.status = "interrupted"
            return [(record.id, json.loads(record.previous_settings)) for record in interrupted]

    def get(self, apply_id: int) -> dict[str, Any]:
        with self.sessions() as session:
            record = session.get(ConfigApply, apply_id)
            if record is None:
                raise NotFound(f"there is no apply {apply_id}")
            return apply_view(record)

    def list(self, page: PageRequest, status: str | None = None) -> Page[dict[str, Any]]:
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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None
