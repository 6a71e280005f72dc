"""API tokens: created once (the secret is shown only then), stored as a SHA-256 digest.

Format: `mailyard_<key id>_<secret>`. The key id finds the row; the secret is compared
in constant time with the stored digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.db.models import ApiToken, ApiTokenDomain, SystemState, utcnow
from controller.domain.access import Context, Principal
from controller.domain.errors import InvalidInput, NotFound, Unauthenticated
from controller.domain.pagination import Page, PageRequest, paginate
from controller.domain.validation import check_text, normalize_domain

TOKEN_PREFIX = "mailyard"  # noqa: S105 - a label, not a secret
BOOTSTRAP_STATE_KEY = "bootstrap_admin_token_id"
# Recording every use would turn each read into a write; minute resolution is enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_TOKEN_DOMAINS = 1000


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
) -> IssuedToken:
    ctx.principal.require_write()
    ctx.principal.require_admin("create tokens")
    return issue_token(ctx.session, name, is_admin=is_admin, read_only=read_only, domains=domains)


def issue_token(
    session: Session,
    name: str,
    *,
    is_admin: bool,
    read_only: bool,
    domains: Sequence[str] = (),
    commit: bool = True,
) -> IssuedToken:
    """Create a token row and return it with its one-time secret (no permission check:
    callers are create_token and the controller's first start)."""
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
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    token = ApiToken(
        key_id=key_id,
        secret_sha256=_digest(secret),
        name=name,
        is_admin=is_admin,
        read_only=read_only,
        domains=[ApiTokenDomain(domain=domain) for domain in normalized],
    )
    session.add(token)
    if commit:
        session.commit()
    else:
        session.flush()
    return IssuedToken(token=token, secret=f"{TOKEN_PREFIX}_{key_id}_{secret}")


def authenticate(session: Session, bearer: str) -> Principal:
    """The Principal for a bearer token, or Unauthenticated."""
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
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
        session.commit()
    return Principal(
        name=token.name,
        is_admin=token.is_admin,
        read_only=token.read_only,
        domains=frozenset(entry.domain for entry in token.domains),
        token_id=token.id,
    )


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
