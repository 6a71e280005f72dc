"""The `settings` table: stored values of mail settings that differ from their defaults."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.db.models import Setting
from controller.domain.mail_settings import MailSettings


def load_stored(session: Session) -> dict[str, Any]:
    return {row.name: json.loads(row.value) for row in session.scalars(select(Setting))}


def save_stored(session: Session, values: Mapping[str, Any]) -> None:
    """Make the table hold exactly `values` (not committed here)."""
    existing = {row.name: row for row in session.scalars(select(Setting))}
    for name in set(existing) - set(values):
        session.execute(delete(Setting).where(Setting.name == name))
    for name, value in values.items():
        encoded = json.dumps(value, sort_keys=True)
        row = existing.get(name)
        if row is None:
            session.add(Setting(name=name, value=encoded))
        elif row.value != encoded:
            row.value = encoded


def stored_or_default(session: Session, name: str) -> Any:
    """One setting's stored value, else its built-in default (for settings that the
    first-start environment does not override, such as default_quota_mb)."""
    row = session.get(Setting, name)
    if row is not None:
        return json.loads(row.value)
    return MailSettings.model_fields[name].default
