"""Relay domains: this server is their backup MX; mail is queued and forwarded (seed 003).

Recipients are not verified for relay domains (the primary knows them, we do not), as in
the seed design; mail goes to `nexthop` when set, else to the domain's MX hosts.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from controller.db.models import ApiTokenRelayDomain, RelayDomain
from controller.domain.access import Context
from controller.domain.namespace import ensure_domain_name_free
from controller.domain.pagination import Page, PageRequest, paginate
from controller.domain.validation import normalize_domain, normalize_nexthop
from controller.errors import Conflict, InvalidInput, NotFound

_UNSET = object()


def _visible_relay_domain(ctx: Context, name: str) -> RelayDomain:
    try:
        normalized = normalize_domain(name)
    except InvalidInput as exc:
        raise NotFound(f"relay domain '{name}' not found") from exc
    relay = ctx.session.scalar(select(RelayDomain).where(RelayDomain.name == normalized))
    if relay is None or not ctx.principal.sees(relay.name):
        raise NotFound(f"relay domain '{normalized}' not found")
    return relay


def get_relay_domain(ctx: Context, name: str) -> RelayDomain:
    return _visible_relay_domain(ctx, name)


def list_relay_domains(ctx: Context, page: PageRequest) -> Page[RelayDomain]:
    query = select(RelayDomain).order_by(RelayDomain.name)
    if not ctx.principal.is_admin:
        query = query.where(RelayDomain.name.in_(sorted(ctx.principal.domains)))
    return paginate(ctx.session, query, page)


def create_relay_domain(
    ctx: Context, name: str, nexthop: str | None = None, active: bool = True
) -> RelayDomain:
    ctx.principal.require_write()
    ctx.principal.require_admin("create relay domains")
    normalized = normalize_domain(name)
    hop = normalize_nexthop(nexthop) if nexthop else None
    ensure_domain_name_free(ctx.session, normalized)
    relay = RelayDomain(name=normalized, nexthop=hop, active=active)
    ctx.session.add(relay)
    try:
        ctx.session.commit()
    except IntegrityError as exc:
        ctx.session.rollback()
        raise Conflict(f"relay domain '{normalized}' already exists", field="name") from exc
    ctx.domains_changed()
    return relay


def update_relay_domain(
    ctx: Context, name: str, *, nexthop: str | object | None = _UNSET, active: bool | None = None
) -> RelayDomain:
    """Change a relay domain; `nexthop=None` clears it (back to MX delivery)."""
    ctx.principal.require_write()
    relay = _visible_relay_domain(ctx, name)
    ctx.principal.require_admin("change relay domains")
    if nexthop is not _UNSET:
        relay.nexthop = normalize_nexthop(nexthop) if isinstance(nexthop, str) and nexthop else None
    if active is not None:
        relay.active = active
    ctx.session.commit()
    if active is not None:
        ctx.domains_changed()
    return relay


def delete_relay_domain(ctx: Context, name: str) -> None:
    ctx.principal.require_write()
    relay = _visible_relay_domain(ctx, name)
    ctx.principal.require_admin("delete relay domains")
    # Also ON DELETE CASCADE; explicit so it never depends on the engine's FK mode.
    ctx.session.execute(
        delete(ApiTokenRelayDomain).where(ApiTokenRelayDomain.relay_domain_id == relay.id)
    )
    ctx.session.delete(relay)
    ctx.session.commit()
    ctx.domains_changed()
