"""Failed-login blocks: which client addresses are refused, and lifting a block.

Dovecot's auth policy server (images/dovecot/auth_policy.py) counts failed logins per
client address in `login_blocks` and blocks an address that fails too often (mail
settings login_*). This module only reads that table and deletes rows; admin tokens
only, since a client address belongs to no domain.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import NoReturn

from sqlalchemy import select

from controller.db.models import LoginBlock, utcnow
from controller.domain.access import Context
from controller.domain.pagination import Page, PageRequest, paginate
from controller.errors import Action, InvalidInput, NotFound

# One IPv6 client usually holds a whole /64 (SLAAC, privacy addresses), so that is what
# the policy server counts and blocks.
IPV6_PREFIX = 64


def normalize_client_address(value: str) -> str:
    """The key a block is stored under, as the policy server computes it (its
    `client_key`): an IPv4 address, or the /64 network of an IPv6 address given as an
    address or as that /64 (an IPv4-mapped IPv6 address is its IPv4 address)."""
    text = value.strip()
    if len(text) > 64:
        _not_an_address(text, "too long")
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=True)
            if network.version == 6 and network.prefixlen == IPV6_PREFIX:
                return str(network)
            return _not_an_address(text, "blocks are per IPv4 address or per IPv6 /64")
        address = ipaddress.ip_address(text)
    except ValueError as exc:
        return _not_an_address(text, str(exc))
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


def _not_an_address(text: str, why: str) -> NoReturn:
    raise InvalidInput(
        f"{text[:80]!r} is not a client address ({why}): give an IPv4 address such as "
        "192.0.2.7, or an IPv6 address or its /64",
        field="address",
    )


def list_blocks(
    ctx: Context, page: PageRequest, *, now: datetime | None = None
) -> Page[LoginBlock]:
    """Addresses blocked now, the block ending last first."""
    ctx.principal.require_admin("list login blocks")
    moment = now or utcnow()
    query = (
        select(LoginBlock)
        .where(LoginBlock.blocked_until > moment)
        .order_by(LoginBlock.blocked_until.desc(), LoginBlock.address)
    )
    return paginate(ctx.session, query, page)


def lift_block(ctx: Context, address: str, *, now: datetime | None = None) -> str:
    """Lift the block of `address` and forget its failures; the normalized address.

    Its next login is judged afresh, on every Dovecot replica at once (they all read the
    same table)."""
    ctx.principal.require_admin("lift login blocks")
    ctx.principal.require_write()
    key = normalize_client_address(address)
    block = ctx.session.get(LoginBlock, key)
    moment = now or utcnow()
    if block is None or block.blocked_until is None or block.blocked_until <= moment:
        raise NotFound(
            f"{key} is not blocked; see which addresses are",
            action=Action(api="GET /api/v1/blocks", cli="mailyard blocks list"),
        )
    ctx.session.delete(block)
    ctx.session.commit()
    return key
