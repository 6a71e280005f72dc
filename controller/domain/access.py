"""Who is calling (a Principal) and what its token allows.

Rules, in one place:
- read-only tokens never write (403);
- domain-scoped tokens see only objects of their domains: anything else is reported as
  absent (404), so a token cannot learn which other domains or addresses exist;
- creating something in a domain outside the scope is refused (403): the caller named
  the domain, so refusing reveals nothing;
- domain-level objects (domains, alias and relay domains) and tokens are admin-only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.db.models import Domain
from controller.domain.list_service import ListsBackend
from controller.domain.validation import normalize_domain
from controller.errors import Forbidden, InvalidInput, NotFound
from controller.services.dkim_keys import KeyStore


@dataclass(frozen=True)
class Principal:
    name: str
    is_admin: bool
    read_only: bool
    domains: frozenset[str] = frozenset()
    token_id: int | None = None

    def sees(self, domain: str) -> bool:
        return self.is_admin or domain in self.domains

    def require_write(self) -> None:
        if self.read_only:
            raise Forbidden("this token is read-only; use a read-write token to make changes")

    def require_admin(self, action: str) -> None:
        if not self.is_admin:
            raise Forbidden(f"only an admin token may {action}")

    def require_domain_write(self, domain: str) -> None:
        self.require_write()
        if not self.sees(domain):
            allowed = ", ".join(sorted(self.domains)) or "none"
            raise Forbidden(
                f"this token may not manage domain '{domain}' (it is limited to: {allowed})"
            )


# The `mailyard` command runs inside the controller container with database access,
# which is already full control; it acts as an admin.
SYSTEM = Principal(name="mailyard command", is_admin=True, read_only=False)


def _ignore(_addresses: Sequence[str]) -> None:
    return None


def _nothing() -> None:
    return None


@dataclass
class Context:
    """What every use case needs: the unit of work, the caller, and what its side effects
    reach beyond the database. The API and the `mailyard` command build the same
    Context (controller/wiring.py), so a use case does the same whichever calls it.

    Hooks run after a commit that changed what a daemon caches or routes:
    - `credentials_changed`: credentials or mailbox state (Dovecot's auth cache);
    - `domains_changed`: the hosted, alias or relay domains (Postfix's smtpd processes
      remember how they classified each recipient address, so an address refused as
      foreign before its domain existed would stay refused);
    - `list_created`: Postfix must route list addresses to Mailman (once its table is
      there).
    Stores beyond the database:
    - `dkim_keys`: the DKIM private key files (a new domain gets its key at once);
    - `lists`: the mailing list service, None when lists are disabled.
    """

    session: Session
    principal: Principal
    credentials_changed: Callable[[Sequence[str]], None] = field(default=_ignore)
    domains_changed: Callable[[], None] = field(default=_nothing)
    list_created: Callable[[], None] = field(default=_nothing)
    dkim_keys: KeyStore | None = None
    lists: ListsBackend | None = None


@dataclass(frozen=True)
class Effects:
    """Everything of a Context but the unit of work and the caller: built once by the API
    and by the `mailyard` command (controller/wiring.py), then a Context per request."""

    credentials_changed: Callable[[Sequence[str]], None] = _ignore
    domains_changed: Callable[[], None] = _nothing
    list_created: Callable[[], None] = _nothing
    dkim_keys: KeyStore | None = None
    lists: ListsBackend | None = None

    def context(self, session: Session, principal: Principal) -> Context:
        return Context(
            session,
            principal,
            credentials_changed=self.credentials_changed,
            domains_changed=self.domains_changed,
            list_created=self.list_created,
            dkim_keys=self.dkim_keys,
            lists=self.lists,
        )


def visible_domain(ctx: Context, name: str) -> Domain:
    """The domain, or 404 when it does not exist or is outside the token's scope (the
    same answer, so a scoped token cannot probe for other customers' domains)."""
    try:
        normalized = normalize_domain(name)
    except InvalidInput as exc:
        raise NotFound(f"domain '{name}' not found") from exc
    domain = ctx.session.scalar(select(Domain).where(Domain.name == normalized))
    if domain is None or not ctx.principal.sees(domain.name):
        raise NotFound(f"domain '{normalized}' not found")
    return domain
