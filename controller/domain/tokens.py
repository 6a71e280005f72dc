"""API tokens: created once (the secret is shown only then), stored as a SHA-256 digest.

Format: `mailyard_<key id>_<secret>`. The key id finds the row; the secret is compared
in constant time with the stored digest.

A token may carry an expiry and a list of client networks; both are checked only after
the secret matched, so their refusals (which say why) tell nothing to someone without
the secret. A scoped token names hosted (or relay) domains by their rows, not their
names: deleting a domain takes it out of every token for good.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.db.models import (
    AliasDomain,
    ApiToken,
    ApiTokenDomain,
    ApiTokenRelayDomain,
    Domain,
    RelayDomain,
    SystemState,
    utcnow,
)
from controller.domain.access import Context, Principal
from controller.domain.pagination import Page, PageRequest, paginate
from controller.domain.validation import check_text, normalize_domain
from controller.errors import Action, InvalidInput, NotFound, Unauthenticated

TOKEN_PREFIX = "mailyard"  # noqa: S105 - a label, not a secret
BOOTSTRAP_STATE_KEY = "bootstrap_admin_token_id"
# Recording every use would turn each read into a write; minute resolution is enough
# (a use from another address is always recorded).
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_TOKEN_DOMAINS = 1000
# A panel has a handful of addresses; 32 networks cover any sane setup and keep the
# stored list (api_tokens.networks, 2000 characters) bounded.
MAX_TOKEN_NETWORKS = 32
MAX_EXPIRY_DAYS = 3650
# What a CIDR may contain before ipaddress parses it: no spaces, commas, '%' (IPv6
# scope ids) or anything else that could change the stored comma-separated list.
_CIDR_CHARACTERS = re.compile(r"[0-9A-Fa-f:./]{1,64}")
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the full bearer value, shown once


def create_token(
    ctx: Context,
    name: str,
    *,
    is_admin: bool,
    read_only: bool,
    domains: Sequence[str] = (),
    expires_at: datetime | None = None,
    expires_in_days: int | None = None,
    networks: Sequence[str] = (),
) -> IssuedToken:
    ctx.principal.require_write()
    ctx.principal.require_admin("create tokens")
    return issue_token(
        ctx.session,
        name,
        is_admin=is_admin,
        read_only=read_only,
        domains=domains,
        expires_at=resolve_expiry(expires_at, expires_in_days),
        networks=networks,
    )


def issue_token(
    session: Session,
    name: str,
    *,
    is_admin: bool,
    read_only: bool,
    domains: Sequence[str] = (),
    expires_at: datetime | None = None,
    networks: Sequence[str] = (),
    commit: bool = True,
) -> IssuedToken:
    """Create a token row and return it with its one-time secret (no permission check:
    callers are create_token and the controller's first start). `expires_at` is naive
    UTC (resolve_expiry makes it)."""
    name = check_text(name, "name", max_length=100)
    if not name:
        raise InvalidInput("name must not be empty: say who or what will use this token")
    if is_admin and domains:
        raise InvalidInput(
            "an admin token covers every domain; leave domains empty or set admin to false",
            field="domains",
        )
    if not is_admin and not domains:
        raise InvalidInput(
            "a non-admin token needs at least one domain in domains", field="domains"
        )
    if len(domains) > MAX_TOKEN_DOMAINS:
        raise InvalidInput(f"at most {MAX_TOKEN_DOMAINS} domains per token", field="domains")
    normalized = sorted(
        {normalize_domain(value, f"domains[{index}]") for index, value in enumerate(domains)}
    )
    hosted, relays = _scope_rows(session, normalized)
    allowed = normalize_networks(networks)
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    token = ApiToken(
        key_id=key_id,
        secret_sha256=_digest(secret),
        name=name,
        is_admin=is_admin,
        read_only=read_only,
        expires_at=expires_at,
        networks=",".join(str(network) for network in allowed),
        domains=[ApiTokenDomain(domain=domain) for domain in hosted],
        relay_domains=[ApiTokenRelayDomain(relay_domain=relay) for relay in relays],
    )
    session.add(token)
    if commit:
        session.commit()
    else:
        session.flush()
    return IssuedToken(token=token, secret=f"{TOKEN_PREFIX}_{key_id}_{secret}")


def _scope_rows(session: Session, names: Sequence[str]) -> tuple[list[Domain], list[RelayDomain]]:
    """The rows a scoped token is bound to; every name must be a hosted or relay domain
    now (a name alone would let a later domain of that name inherit the token)."""
    if not names:
        return [], []
    hosted = list(session.scalars(select(Domain).where(Domain.name.in_(names))))
    relays = list(session.scalars(select(RelayDomain).where(RelayDomain.name.in_(names))))
    found = {row.name for row in hosted} | {row.name for row in relays}
    missing = [name for name in names if name not in found]
    if missing:
        aliases = {
            row.name: row.target_domain.name
            for row in session.scalars(select(AliasDomain).where(AliasDomain.name.in_(missing)))
        }
        described = [
            f"'{name}' (an alias domain: name its target '{aliases[name]}')"
            if name in aliases
            else f"'{name}'"
            for name in missing[:10]
        ]
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        plain = [name for name in missing if name not in aliases]
        raise InvalidInput(
            f"a token can only be limited to domains hosted here (or relay domains); not "
            f"found: {', '.join(described)}{more}. Create the domain first, then the token",
            field="domains",
            action=Action(
                api="POST /api/v1/domains",
                cli=f"mailyard domain add {plain[0] if len(plain) == 1 else 'NAME'}",
            ),
        )
    return hosted, relays


def resolve_expiry(
    expires_at: datetime | None, expires_in_days: int | None, now: datetime | None = None
) -> datetime | None:
    """The expiry as naive UTC, from an absolute time (naive means UTC) or a number of
    days from now; None: the token does not expire."""
    current = now or utcnow()
    latest = current + timedelta(days=MAX_EXPIRY_DAYS)
    if expires_at is not None and expires_in_days is not None:
        raise InvalidInput(
            "give either expires_at or expires_in_days, not both", field="expires_in_days"
        )
    if expires_in_days is not None:
        if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
            raise InvalidInput(
                f"expires_in_days must be 1 to {MAX_EXPIRY_DAYS} (ten years); leave it out "
                "for a token that does not expire",
                field="expires_in_days",
            )
        return (current + timedelta(days=expires_in_days)).replace(microsecond=0)
    if expires_at is None:
        return None
    if expires_at.tzinfo is not None:
        expires_at = expires_at.astimezone(UTC).replace(tzinfo=None)
    expires_at = expires_at.replace(microsecond=0)
    if expires_at <= current:
        raise InvalidInput(
            f"expires_at {expires_at:%Y-%m-%dT%H:%M:%S}Z is not in the future (times are "
            "UTC unless they carry an offset)",
            field="expires_at",
        )
    if expires_at > latest:
        raise InvalidInput(
            f"expires_at may be at most {MAX_EXPIRY_DAYS} days (ten years) from now",
            field="expires_at",
        )
    return expires_at


def normalize_networks(values: Sequence[str]) -> list[IpNetwork]:
    """Client networks as canonical CIDRs (a bare address is a /32 or /128), without
    duplicates, in the order given."""
    if len(values) > MAX_TOKEN_NETWORKS:
        raise InvalidInput(
            f"at most {MAX_TOKEN_NETWORKS} networks per token; use wider prefixes",
            field="networks",
        )
    networks: list[IpNetwork] = []
    for index, value in enumerate(values):
        field = f"networks[{index}]"
        if not isinstance(value, str) or not _CIDR_CHARACTERS.fullmatch(value):
            raise InvalidInput(
                f"{field} {value!r} is not a network: give an address or CIDR such as "
                "203.0.113.0/24 or 2001:db8::/48",
                field=field,
            )
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise InvalidInput(
                f"{field} {value!r} is not a network ({exc}); give it as CIDR with the "
                "host bits zero, e.g. 203.0.113.0/24",
                field=field,
            ) from exc
        if network not in networks:
            networks.append(network)
    return networks


def client_address(host: str | None) -> IpAddress | None:
    """The client's address as the controller saw it; an IPv4 client of a dual-stack
    socket (::ffff:a.b.c.d) counts as its IPv4 address. None when it is not an IP
    address (a Unix socket, a test client)."""
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _check_use(token: ApiToken, client: IpAddress | None, host: str | None, now: datetime) -> None:
    """Refuse an expired token, or one used from outside its networks."""
    if token.expires_at is not None and now >= token.expires_at:
        raise Unauthenticated(
            f"this token expired at {token.expires_at:%Y-%m-%d %H:%M} UTC; an admin can "
            "create a new one",
            action=Action(api="POST /api/v1/tokens", cli="mailyard token create NAME"),
        )
    if not token.networks:
        return
    allowed = [ipaddress.ip_network(text) for text in token.networks.split(",")]
    if client is None or not any(
        client.version == network.version and client in network for network in allowed
    ):
        # Says which address was seen (the caller's own), never which networks are allowed.
        raise Unauthenticated(
            f"this token may not be used from {host or 'an unknown address'}: it is "
            "limited to other client networks; use it from an allowed network or ask an "
            "admin for a token that allows this address"
        )


def authenticate(session: Session, bearer: str, client_host: str | None = None) -> Principal:
    """The Principal for a bearer token used from `client_host`, or Unauthenticated."""
    prefix, _, rest = bearer.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not key_id or not secret or len(bearer) > 200:
        raise Unauthenticated(
            "the bearer token is malformed; tokens look like mailyard_<id>_<secret>"
        )
    token = session.scalar(select(ApiToken).where(ApiToken.key_id == key_id))
    # Compare against a digest even when the key id is unknown, so timing does not tell
    # which key ids exist.
    expected = token.secret_sha256 if token is not None else _digest("")
    if not hmac.compare_digest(expected, _digest(secret)) or token is None:
        raise Unauthenticated("the bearer token is not valid (revoked or mistyped)")
    now = utcnow()
    client = client_address(client_host)
    _check_use(token, client, client_host, now)
    seen_from = str(client) if client is not None else None
    if (
        token.last_used_at is None
        or now - token.last_used_at > LAST_USED_RESOLUTION
        or token.last_used_from != seen_from
    ):
        token.last_used_at = now
        token.last_used_from = seen_from
        session.commit()
    return Principal(
        name=token.name,
        is_admin=token.is_admin,
        read_only=token.read_only,
        domains=frozenset(scope_names(token)),
        token_id=token.id,
    )


def scope_names(token: ApiToken) -> list[str]:
    """The names of the domains a scoped token is limited to, as they are now."""
    return sorted(
        [entry.domain.name for entry in token.domains]
        + [entry.relay_domain.name for entry in token.relay_domains]
    )


def token_networks(token: ApiToken) -> list[str]:
    return token.networks.split(",") if token.networks else []


def list_tokens(ctx: Context, page: PageRequest) -> Page[ApiToken]:
    ctx.principal.require_admin("list tokens")
    return paginate(ctx.session, select(ApiToken).order_by(ApiToken.id), page)


def get_token(ctx: Context, token_id: int) -> ApiToken:
    ctx.principal.require_admin("read tokens")
    token = ctx.session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"token {token_id} not found")
    return token


def revoke_token(ctx: Context, token_id: int) -> None:
    ctx.principal.require_write()
    token = get_token(ctx, token_id)
    ctx.session.delete(token)
    ctx.session.commit()


def bootstrap_admin_token(session: Session, keep: Callable[[str], None]) -> bool:
    """On the very first start, issue the first admin token; afterwards, never again.

    `keep` stores the secret (the controller writes it into its state volume) before the
    token is committed, so a crash in between leaves no token that nobody can read.
    Remembered in system_state, so revoking the first token does not bring it back.
    Returns whether a token was issued.
    """
    if session.get(SystemState, BOOTSTRAP_STATE_KEY) is not None:
        return False
    issued = issue_token(session, "first admin token", is_admin=True, read_only=False, commit=False)
    session.add(SystemState(key=BOOTSTRAP_STATE_KEY, value=str(issued.token.id)))
    session.flush()
    keep(issued.secret)
    session.commit()
    return True


def bootstrap_token_is_active(session: Session) -> bool:
    state = session.get(SystemState, BOOTSTRAP_STATE_KEY)
    return state is not None and session.get(ApiToken, int(state.value)) is not None
