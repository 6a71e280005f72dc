"""Aliases: one address (or `@domain`, a catch-all) forwarding to many destinations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from controller.db.models import Alias, AliasDestination, Domain, Mailbox
from controller.domain.access import Context
from controller.domain.domains import require_hosted_domain, restrict_to_visible_domains
from controller.domain.pagination import Page, PageRequest, paginate
from controller.domain.validation import Address, parse_address
from controller.errors import Conflict, InvalidInput, NotFound

# Postfix expands at most virtual_alias_expansion_limit (1000) addresses; an alias with
# more destinations than this is better served by a mailing list.
MAX_DESTINATIONS = 200


def _parse_alias_address(value: str) -> Address:
    return parse_address(value, allow_catch_all=True)


def _visible_alias(ctx: Context, address: str) -> Alias:
    try:
        parsed = _parse_alias_address(address)
    except InvalidInput as exc:
        raise NotFound(f"alias '{address}' not found") from exc
    alias = ctx.session.scalar(select(Alias).where(Alias.address == str(parsed)))
    if alias is None or not ctx.principal.sees(parsed.domain):
        raise NotFound(f"alias '{parsed}' not found")
    return alias


def _check_destinations(alias: Address, destinations: Sequence[str]) -> list[str]:
    if not destinations:
        raise InvalidInput("destinations must list at least one address", field="destinations")
    if len(destinations) > MAX_DESTINATIONS:
        raise InvalidInput(
            f"an alias may have at most {MAX_DESTINATIONS} destinations; use a mailing list "
            "for more",
            field="destinations",
        )
    result: list[str] = []
    for index, value in enumerate(destinations):
        parsed = parse_address(value, f"destinations[{index}]", destination=True)
        if str(parsed) == str(alias):
            raise InvalidInput(
                f"destinations[{index}] is the alias itself; that would loop",
                field="destinations",
            )
        if str(parsed) not in result:
            result.append(str(parsed))
    return result


def get_alias(ctx: Context, address: str) -> Alias:
    return _visible_alias(ctx, address)


def list_aliases(ctx: Context, page: PageRequest, domain: str | None = None) -> Page[Alias]:
    query = select(Alias).join(Domain).order_by(Alias.address)
    return paginate(ctx.session, restrict_to_visible_domains(ctx, query, domain), page)


def create_alias(
    ctx: Context, address: str, destinations: Sequence[str], active: bool = True
) -> Alias:
    ctx.principal.require_write()
    parsed = _parse_alias_address(address)
    domain = require_hosted_domain(ctx, parsed.domain, "address")
    targets = _check_destinations(parsed, destinations)
    session = ctx.session
    if session.scalar(select(Alias.id).where(Alias.address == str(parsed))) is not None:
        raise Conflict(f"alias '{parsed}' already exists", field="address")
    if session.scalar(select(Mailbox.id).where(Mailbox.address == str(parsed))) is not None:
        raise Conflict(
            f"'{parsed}' is a mailbox; to forward its mail, add a Sieve redirect for it "
            "(ManageSieve, port 4190) or pick another address",
            field="address",
        )
    alias = Alias(
        domain=domain,
        address=str(parsed),
        active=active,
        destinations=[
            AliasDestination(address=target, position=index) for index, target in enumerate(targets)
        ],
    )
    session.add(alias)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"alias '{parsed}' already exists", field="address") from exc
    return alias


@dataclass(frozen=True)
class AliasChanges:
    destinations: Sequence[str] | None = None
    active: bool | None = None


def update_alias(ctx: Context, address: str, changes: AliasChanges) -> Alias:
    ctx.principal.require_write()
    alias = _visible_alias(ctx, address)
    if changes.destinations is not None:
        targets = _check_destinations(_parse_alias_address(alias.address), changes.destinations)
        alias.destinations.clear()
        ctx.session.flush()
        alias.destinations.extend(
            AliasDestination(address=target, position=index) for index, target in enumerate(targets)
        )
    if changes.active is not None:
        alias.active = changes.active
    ctx.session.commit()
    return alias


def delete_alias(ctx: Context, address: str) -> None:
    ctx.principal.require_write()
    alias = _visible_alias(ctx, address)
    ctx.session.delete(alias)
    ctx.session.commit()
