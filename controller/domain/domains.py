"""Hosted domains: create, read, change, delete."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError

from controller.db.models import (
    Alias,
    AliasDomain,
    ApiTokenDomain,
    Domain,
    DomainFilterPolicy,
    Mailbox,
)
from controller.domain import dkim
from controller.domain.access import Context, visible_domain
from controller.domain.list_service import ListsBackend, ListServiceNotConfigured
from controller.domain.namespace import ensure_domain_name_free
from controller.domain.pagination import Page, PageRequest, paginate
from controller.domain.validation import check_text, normalize_domain
from controller.errors import Action, Conflict, InvalidInput, MailyardError, NotFound

SelectT = TypeVar("SelectT", bound=Select[Any])
log = logging.getLogger(__name__)


def get_domain(ctx: Context, name: str) -> Domain:
    return visible_domain(ctx, name)


def require_hosted_domain(ctx: Context, name: str, field: str) -> Domain:
    """The hosted domain an address belongs to, for creating things in it.

    Scope is checked first, so a scoped token learns nothing about domains outside it.
    """
    ctx.principal.require_domain_write(name)
    domain = ctx.session.scalar(select(Domain).where(Domain.name == name))
    if domain is not None:
        return domain
    alias_domain = ctx.session.scalar(select(AliasDomain).where(AliasDomain.name == name))
    if alias_domain is not None and ctx.principal.sees(alias_domain.target_domain.name):
        raise InvalidInput(
            f"'{name}' is an alias domain of '{alias_domain.target_domain.name}'; "
            f"create this at '{alias_domain.target_domain.name}' instead",
            field=field,
        )
    raise InvalidInput(
        f"domain '{name}' is not hosted here; create it first",
        field=field,
        action=Action(api="POST /api/v1/domains", cli=f"mailyard domain add {name}"),
    )


def restrict_to_visible_domains(ctx: Context, query: SelectT, domain: str | None) -> SelectT:
    """Narrow a query joined with Domain to `domain` (404 if the caller may not see it),
    or, without one, to the domains the caller sees."""
    if domain is not None:
        name = normalize_domain(domain, "domain")
        if not ctx.principal.sees(name):
            raise NotFound(f"domain '{name}' not found")
        return query.where(Domain.name == name)
    if not ctx.principal.is_admin:
        return query.where(Domain.name.in_(sorted(ctx.principal.domains)))
    return query


def list_domains(ctx: Context, page: PageRequest) -> Page[Domain]:
    query = select(Domain).order_by(Domain.name)
    if not ctx.principal.is_admin:
        query = query.where(Domain.name.in_(sorted(ctx.principal.domains)))
    return paginate(ctx.session, query, page)


def create_domain(ctx: Context, name: str, description: str = "", active: bool = True) -> Domain:
    ctx.principal.require_write()
    ctx.principal.require_admin("create domains")
    normalized = normalize_domain(name)
    description = check_text(description, "description")
    ensure_domain_name_free(ctx.session, normalized)
    domain = Domain(name=normalized, description=description, active=active)
    ctx.session.add(domain)
    try:
        ctx.session.commit()
    except IntegrityError as exc:
        ctx.session.rollback()
        raise Conflict(f"domain '{normalized}' already exists", field="name") from exc
    ctx.domains_changed()
    _give_signing_key(ctx, domain)
    return domain


def _give_signing_key(ctx: Context, domain: Domain) -> None:
    """A new domain signs its mail from the start: an active DKIM key. A failure to write
    the key does not undo the domain: it is logged, and a rotation (or the controller's
    next start, dkim.ensure_all_domains) makes the key."""
    if ctx.dkim_keys is None:
        return
    try:
        dkim.ensure_domain_key(ctx.session, domain, ctx.dkim_keys)
    except OSError as exc:
        log.warning("could not create a DKIM key for %s: %s", domain.name, exc)


@dataclass(frozen=True)
class DomainChanges:
    description: str | None = None
    active: bool | None = None


def update_domain(ctx: Context, name: str, changes: DomainChanges) -> Domain:
    ctx.principal.require_write()
    domain = visible_domain(ctx, name)
    ctx.principal.require_admin("change domains")
    affected: list[str] = []
    active_changed = changes.active is not None and changes.active != domain.active
    if changes.description is not None:
        domain.description = check_text(changes.description, "description")
    if changes.active is not None and active_changed:
        domain.active = changes.active
        affected = _mailbox_addresses(ctx, domain.id)
    ctx.session.commit()
    if affected:
        ctx.credentials_changed(affected)
    if active_changed:
        ctx.domains_changed()
    return domain


def delete_domain(ctx: Context, name: str, cascade: bool = False) -> None:
    """Delete a domain. With mailboxes, aliases or alias domains still in it, refuse unless
    `cascade`; mail already stored in maildirs is kept on disk either way. Its DKIM key
    files go with it.

    Mailing lists (kept by Mailman, asked through `ctx.lists`) always refuse the
    deletion, cascade or not: they are deleted one by one. Mailman unreachable: 503,
    nothing deleted. Without a list service (lists disabled), or when Mailman was never
    set up (no REST password file), there are no lists to look for."""
    lists = ctx.lists
    ctx.principal.require_write()
    domain = visible_domain(ctx, name)
    ctx.principal.require_admin("delete domains")
    session = ctx.session
    mailbox_count = session.scalar(
        select(func.count()).select_from(Mailbox).where(Mailbox.domain_id == domain.id)
    )
    alias_count = session.scalar(
        select(func.count()).select_from(Alias).where(Alias.domain_id == domain.id)
    )
    alias_domain_count = session.scalar(
        select(func.count())
        .select_from(AliasDomain)
        .where(AliasDomain.target_domain_id == domain.id)
    )
    if (mailbox_count or alias_count or alias_domain_count) and not cascade:
        raise Conflict(
            f"domain '{domain.name}' still has {mailbox_count} mailbox(es), {alias_count} "
            f"alias(es) and {alias_domain_count} alias domain(s); delete them first or "
            "repeat the request with cascade=true"
        )
    domain_name = domain.name
    _refuse_while_lists_exist(domain_name, lists)
    # Set-based statements: a domain may hold many thousands of mailboxes, which must not
    # be loaded as objects one by one. Alias destinations go with their alias (FK cascade).
    addresses = _mailbox_addresses(ctx, domain.id)
    for statement in (
        delete(Mailbox).where(Mailbox.domain_id == domain.id),
        delete(Alias).where(Alias.domain_id == domain.id),
        delete(AliasDomain).where(AliasDomain.target_domain_id == domain.id),
        # Also ON DELETE CASCADE; explicit so it never depends on the engine's FK mode.
        delete(DomainFilterPolicy).where(DomainFilterPolicy.domain_id == domain.id),
        # Out of every token's scope for good: a domain created again under this name
        # is a new row that no old token names.
        delete(ApiTokenDomain).where(ApiTokenDomain.domain_id == domain.id),
        delete(Domain).where(Domain.id == domain.id),
    ):
        session.execute(statement.execution_options(synchronize_session=False))
    session.commit()
    session.expunge_all()
    if addresses:
        ctx.credentials_changed(addresses)
    ctx.domains_changed()
    if ctx.dkim_keys is not None:
        dkim.forget_domain(ctx.dkim_keys, domain_name)  # the key rows went with the domain
    if lists is not None:
        try:  # tidy only: an empty Mailman domain left behind does no harm
            lists.remove_domain_if_empty(domain_name)
        except MailyardError as exc:
            log.warning("could not remove domain %s from Mailman: %s", domain_name, exc)


def _refuse_while_lists_exist(domain: str, lists: ListsBackend | None) -> None:
    if lists is None:
        return
    try:
        addresses = lists.list_addresses(domain)
    except ListServiceNotConfigured:
        return  # Mailman never ran with this stack's secrets: it holds no lists
    if addresses:
        shown = ", ".join(addresses[:5]) + (", ..." if len(addresses) > 5 else "")
        raise Conflict(
            f"domain '{domain}' still has {len(addresses)} mailing list(s): {shown}; "
            "deleting a domain with its mailboxes and aliases does not delete mailing "
            "lists, delete them first",
            action=Action(api="DELETE /api/v1/lists/{address}", cli="mailyard list delete ADDRESS"),
        )


def _mailbox_addresses(ctx: Context, domain_id: int) -> list[str]:
    return list(ctx.session.scalars(select(Mailbox.address).where(Mailbox.domain_id == domain_id)))
