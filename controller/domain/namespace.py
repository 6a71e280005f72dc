"""A domain name belongs to exactly one class: hosted, alias or relay (Postfix requires it)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.db.models import AliasDomain, Domain, RelayDomain
from controller.errors import Conflict

_CLASSES: tuple[tuple[type[Domain] | type[AliasDomain] | type[RelayDomain], str], ...] = (
    (Domain, "a hosted domain"),
    (AliasDomain, "an alias domain"),
    (RelayDomain, "a relay domain"),
)


def ensure_domain_name_free(session: Session, name: str) -> None:
    """Raise Conflict if `name` is already hosted, aliased or relayed."""
    for model, label in _CLASSES:
        if session.scalar(select(model.id).where(model.name == name)) is not None:
            raise Conflict(f"'{name}' is already {label} on this server", field="name")
