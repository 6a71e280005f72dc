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

from sqlalchemy.orm import Session

from controller.domain.errors import Forbidden


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
    """What every use-case needs: the unit of work, the caller, and the hooks run after a
    commit that changed what a daemon caches:

    - `credentials_changed`: credentials or mailbox state (Dovecot's auth cache);
    - `domains_changed`: the hosted, alias or relay domains (Postfix's smtpd processes
      remember how they classified each recipient address, so an address refused as
      foreign before its domain existed would stay refused).
    """

    session: Session
    principal: Principal
    credentials_changed: Callable[[Sequence[str]], None] = field(default=_ignore)
    domains_changed: Callable[[], None] = field(default=_nothing)
