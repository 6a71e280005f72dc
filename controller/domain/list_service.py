"""The list service as the domain layer sees it: what the controller needs from it
(`ListsBackend`), the plain values it exchanges, and its errors.

Mailman 3 implements it (controller/services/mailman.py, the only module that talks to
Mailman); the use cases in controller/domain/lists.py and domains.py depend on this
interface only, like quarantine's `Releaser`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Protocol

from controller.errors import Unavailable

SERVICE = "the mailing list service (mailman-core)"
ROLES = ("member", "owner", "moderator")
HELD_ACTIONS = ("accept", "discard", "reject")
# Mailman's delivery_status values; everything but "enabled" means no delivery.
DELIVERY_ON = "enabled"
DELIVERY_OFF = "by_user"


class ListServiceUnavailable(Unavailable):
    """Mailman cannot be asked right now (HTTP 503); nothing was changed by this request."""


class ListServiceNotConfigured(ListServiceUnavailable):
    """No REST password in the secrets volume: Mailman was never set up with this stack."""


@dataclass(frozen=True)
class ListInfo:
    """A list as Mailman shows it (Mailman's own setting names)."""

    address: str  # fqdn_listname, e.g. team@lists.example.org
    list_name: str  # local part
    mail_host: str  # domain
    display_name: str
    subject_prefix: str
    description: str
    archive_policy: str  # public | private | never
    default_member_action: str  # hold | reject | discard | accept | defer
    default_nonmember_action: str
    member_count: int  # role "member" only


@dataclass(frozen=True)
class ListSettings:
    """Settings to write, in Mailman's names; None leaves a setting as it is."""

    display_name: str | None = None
    subject_prefix: str | None = None
    description: str | None = None
    archive_policy: str | None = None
    default_member_action: str | None = None
    default_nonmember_action: str | None = None

    def changed(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class ListMember:
    email: str
    role: str  # member | owner | moderator
    display_name: str
    delivery: bool | None  # role "member" only: False when delivery is off for any reason


@dataclass(frozen=True)
class MemberPage:
    items: Sequence[ListMember]
    total: int


@dataclass(frozen=True)
class HeldMessage:
    request_id: int
    sender: str
    subject: str
    reason: str
    received: datetime | None


class ListsBackend(Protocol):
    """What the controller needs from the list service. Addresses and e-mails are
    normalised (lowercase, IDNA) by the caller; roles are from ROLES."""

    def list_addresses(self, mail_host: str) -> list[str]:
        """The posting addresses of the domain's lists, sorted; [] for a domain Mailman
        does not know."""
        ...

    def get_list(self, address: str) -> ListInfo: ...

    def create_list(self, mail_host: str, list_name: str, settings: ListSettings) -> ListInfo:
        """Create the list (and the Mailman domain on first use), then write `settings`.
        If the settings cannot be written the new list is deleted again."""
        ...

    def update_list(self, address: str, settings: ListSettings) -> ListInfo: ...

    def delete_list(self, address: str) -> None: ...

    def list_members(self, address: str, role: str | None, offset: int, limit: int) -> MemberPage:
        """Owners, moderators, then members (or one role), each sorted by e-mail."""
        ...

    def add_member(
        self, address: str, email: str, role: str, display_name: str, delivery: bool
    ) -> ListMember:
        """Add at once: pre-verified, pre-confirmed and pre-approved (an admin action)."""
        ...

    def remove_member(self, address: str, email: str, role: str) -> None: ...

    def set_delivery(self, address: str, email: str, enabled: bool) -> ListMember: ...

    def held_messages(self, address: str) -> list[HeldMessage]: ...

    def moderate_held(self, address: str, request_id: int, action: str, reason: str | None) -> None:
        """accept | discard | reject (`reason` goes to the poster with a rejection)."""
        ...

    def remove_domain_if_empty(self, mail_host: str) -> None:
        """Forget the Mailman domain if it has no list left (after our domain is gone)."""
        ...
