"""Alias domains: every address of the alias domain reaches the same local part at the
target (user@alias.example -> user@target.example), catch-all included."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from controller.db.models import AliasDomain, Domain
from controller.domain.access import Context
from controller.domain.namespace import ensure_domain_name_free
from controller.domain.pagination import Page, PageRequest, paginate
from controller.domain.validation import normalize_domain
from controller.errors import Conflict, InvalidInput, NotFound


def _visible_alias_domain(ctx: Context, name: str) -> AliasDomain:
    try:
        normalized = normalize_domain(name)
    except InvalidInput as exc:
        raise NotFound(f"alias domain '{name}' not found") from exc
    alias_domain = ctx.session.scalar(select(AliasDomain).where(AliasDomain.name == normalized))
    if alias_domain is None or not ctx.principal.sees(alias_domain.target_domain.name):
        raise NotFound(f"alias domain '{normalized}' not found")
    return alias_domain


def get_alias_domain(ctx: Context, name: str) -> AliasDomain:
    return _visible_alias_domain(ctx, name)


def list_alias_domains(ctx: Context, page: PageRequest) -> Page[AliasDomain]:
    query = select(AliasDomain).join(Domain).order_by(AliasDomain.name)
    if not ctx.principal.is_admin:
        query = query.where(Domain.name.in_(sorted(ctx.principal.domains)))
    return paginate(ctx.session, query, page)


def create_alias_domain(
    ctx: Context, name: str, target_domain: str, active: bool = True
) -> AliasDomain:
    ctx.principal.require_write()
    ctx.principal.require_admin("create alias domains")
    normalized = normalize_domain(name)
    target_name = normalize_domain(target_domain, "target_domain")
    target = ctx.session.scalar(select(Domain).where(Domain.name == target_name))
    if target is None:
        raise InvalidInput(
            f"target_domain '{target_name}' is not a hosted domain; create it first",
            field="target_domain",
        )
    ensure_domain_name_free(ctx.session, normalized)
    alias_domain = AliasDomain(name=normalized, target_domain=target, active=active)
    ctx.session.add(alias_domain)
    try:
        ctx.session.commit()
    except IntegrityError as exc:
        ctx.session.rollback()
        raise Conflict(f"alias domain '{normalized}' already exists", field="name") from exc
    ctx.domains_changed()
    return alias_domain


def update_alias_domain(ctx: Context, name: str, active: bool | None) -> AliasDomain:
    ctx.principal.require_write()
    alias_domain = _visible_alias_domain(ctx, name)
    ctx.principal.require_admin("change alias domains")
    if active is not None:
        alias_domain.active = active
    ctx.session.commit()
    if active is not None:
        ctx.domains_changed()
    return alias_domain


def delete_alias_domain(ctx: Context, name: str) -> None:
    ctx.principal.require_write()
    alias_domain = _visible_alias_domain(ctx, name)
    ctx.principal.require_admin("delete alias domains")
    ctx.session.delete(alias_domain)
    ctx.session.commit()
    ctx.domains_changed()
