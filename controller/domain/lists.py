"""Mailing lists: validation, token scope and the mapping of our settings to Mailman's.

Mailman (mailman-core) is the single owner of list state: nothing about lists or members
is stored in the controller's database. Every use-case here checks the caller and the
values, then asks the list service through `ListsBackend` (controller/services/mailman.py).

Scope follows controller/domain/access.py: a list belongs to the domain of its address;
a domain-scoped token sees and manages only the lists of its domains (others answer 404),
read-only tokens only read.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from sqlalchemy import select

from controller.db.models import Alias, Mailbox
from controller.domain.access import Context
from controller.domain.domains import get_domain
from controller.domain.list_service import (
    HELD_ACTIONS,
    ROLES,
    HeldMessage,
    ListInfo,
    ListMember,
    ListsBackend,
    ListSettings,
)
from controller.domain.pagination import Page, PageRequest
from controller.domain.validation import Address, check_text, parse_address
from controller.errors import Conflict, InvalidInput, MailyardError, NotFound, Unavailable

log = logging.getLogger(__name__)

# Mailman's companion addresses of every list (mailman.mta.aliases.SUBDESTINATIONS):
# <list>-bounces@, -confirm@, ... all route to Mailman, so they must be free too.
COMPANION_SUFFIXES = (
    "-bounces",
    "-confirm",
    "-join",
    "-leave",
    "-owner",
    "-request",
    "-subscribe",
    "-unsubscribe",
)
_LONGEST_SUFFIX = max(len(suffix) for suffix in COMPANION_SUFFIXES)
# RFC 5321 allows 64 characters before the '@'; the longest companion must fit too.
MAX_NAME_LENGTH = 64 - _LONGEST_SUFFIX
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

# posting -> (default_member_action, default_nonmember_action)
POSTING_POLICIES: dict[str, tuple[str, str]] = {
    "members": ("defer", "hold"),
    "anyone": ("defer", "accept"),
    "moderated": ("hold", "hold"),
}
CUSTOM_POSTING = "custom"  # shown when Mailman's actions were changed elsewhere
ARCHIVE_ON = "public"
ARCHIVE_OFF = "never"

MAX_DISPLAY_NAME_LENGTH = 100
MAX_SUBJECT_PREFIX_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 255
MAX_REASON_LENGTH = 500
MAX_HELD_ID = 2**31 - 1


@dataclass(frozen=True)
class MailingList:
    """A list as this API shows it."""

    address: str
    domain: str
    name: str
    display_name: str
    subject_prefix: str
    posting: str  # members | anyone | moderated | custom
    archiving: bool
    description: str
    member_count: int


@dataclass(frozen=True)
class ListValues:
    """A new list; None takes the default (display name = name, prefix "[name] ")."""

    name: str
    display_name: str | None = None
    subject_prefix: str | None = None
    posting: str = "members"
    archiving: bool = False
    description: str = ""


@dataclass(frozen=True)
class ListChanges:
    """Fields to change; None leaves a field as it is (PATCH)."""

    display_name: str | None = None
    subject_prefix: str | None = None
    posting: str | None = None
    archiving: bool | None = None
    description: str | None = None


# --- values --------------------------------------------------------------------------------
def require_backend(backend: ListsBackend | None) -> ListsBackend:
    if backend is None:
        raise Unavailable(
            "mailing lists are not enabled on this controller (MAILYARD_MAILMAN_URL is empty)"
        )
    return backend


def check_list_name(value: str, field: str = "name") -> str:
    """A list's local part: lowercase letters, digits, '.', '_', '-'; not a companion."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    name = check_text(value, field, max_length=1024).lower()
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"{field} '{name}' is not a list name: use lowercase letters, digits, '.', '_' "
            "and '-', starting with a letter or digit (the part before the '@')",
            field=field,
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"{field} '{name}' is longer than {MAX_NAME_LENGTH} characters: its companion "
            f"address {name}-unsubscribe@ would exceed the 64 characters allowed before "
            "the '@'",
            field=field,
        )
    for suffix in COMPANION_SUFFIXES:
        if name.endswith(suffix):
            raise InvalidInput(
                f"{field} '{name}' ends in '{suffix}', which Mailman uses for the companion "
                f"address of a list named '{name[: -len(suffix)]}'; pick another name",
                field=field,
            )
    return name


def _check_display_name(value: str, field: str = "display_name") -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    text = check_text(value, field, max_length=MAX_DISPLAY_NAME_LENGTH)
    if not text:
        raise InvalidInput(f"{field} must not be empty", field=field)
    return text


def _check_subject_prefix(value: str, field: str = "subject_prefix") -> str:
    """Kept as given (the usual trailing space matters); "" means no prefix."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    check_text(value, field, max_length=MAX_SUBJECT_PREFIX_LENGTH)  # control characters
    if len(value) > MAX_SUBJECT_PREFIX_LENGTH:
        raise InvalidInput(
            f"{field} is longer than {MAX_SUBJECT_PREFIX_LENGTH} characters", field=field
        )
    return value


def _check_description(value: str, field: str = "description") -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    return check_text(value, field, max_length=MAX_DESCRIPTION_LENGTH)


def _check_posting(value: str, field: str = "posting") -> tuple[str, str]:
    if value not in POSTING_POLICIES:
        raise InvalidInput(
            f"{field} '{value}' is not one of: {', '.join(POSTING_POLICIES)} (members: "
            "members post, others are held for a moderator; anyone: everybody posts; "
            "moderated: every post is held)",
            field=field,
        )
    return POSTING_POLICIES[value]


def _check_bool(value: bool, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{field} must be true or false", field=field)
    return value


def _check_role(value: str, field: str = "role") -> str:
    if value not in ROLES:
        raise InvalidInput(f"{field} '{value}' is not one of: {', '.join(ROLES)}", field=field)
    return value


def _check_email(value: str, field: str = "email") -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    return str(parse_address(value, field, destination=True))


def posting_of(member_action: str, nonmember_action: str) -> str:
    for name, actions in POSTING_POLICIES.items():
        if actions == (member_action, nonmember_action):
            return name
    return CUSTOM_POSTING


def _view(info: ListInfo) -> MailingList:
    return MailingList(
        address=info.address,
        domain=info.mail_host,
        name=info.list_name,
        display_name=info.display_name,
        subject_prefix=info.subject_prefix,
        posting=posting_of(info.default_member_action, info.default_nonmember_action),
        archiving=info.archive_policy != ARCHIVE_OFF,
        description=info.description,
        member_count=info.member_count,
    )


# --- scope ---------------------------------------------------------------------------------
def _visible_list_address(ctx: Context, address: str) -> Address:
    """The list's address if the caller may see its domain; 404 otherwise (also for a
    malformed address: it cannot name a list)."""
    try:
        parsed = parse_address(address)
    except InvalidInput as exc:
        raise NotFound(f"mailing list '{address}' not found") from exc
    if not ctx.principal.sees(parsed.domain):
        raise NotFound(f"mailing list '{parsed}' not found")
    return parsed


def _writable_list_address(ctx: Context, address: str) -> Address:
    ctx.principal.require_write()
    parsed = _visible_list_address(ctx, address)
    ctx.principal.require_domain_write(parsed.domain)
    return parsed


def _ensure_addresses_free(ctx: Context, name: str, domain: str) -> None:
    """The list's address and its companions must not be mailboxes or aliases."""
    wanted = [f"{name}@{domain}"] + [f"{name}{suffix}@{domain}" for suffix in COMPANION_SUFFIXES]
    for model, label in ((Mailbox, "a mailbox"), (Alias, "an alias")):
        taken = ctx.session.scalars(
            select(model.address).where(model.address.in_(wanted)).order_by(model.address)
        ).first()
        if taken is not None:
            raise Conflict(
                f"'{taken}' is already {label}; a list named '{name}' needs {name}@{domain} "
                f"and its companion addresses {name}-bounces, -confirm, -join, -leave, "
                f"-owner, -request, -subscribe and -unsubscribe @{domain}: pick another "
                f"name or delete {label.split(' ', 1)[1]} '{taken}' first",
                field="name",
            )


# --- lists ---------------------------------------------------------------------------------
def list_lists(
    ctx: Context, backend: ListsBackend | None, domain_name: str, page: PageRequest
) -> Page[MailingList]:
    domain = get_domain(ctx, domain_name)
    lists = require_backend(backend)
    addresses = lists.list_addresses(domain.name)
    items: list[MailingList] = []
    for address in addresses[page.offset : page.offset + page.limit]:
        try:
            items.append(_view(lists.get_list(address)))
        except NotFound:  # deleted meanwhile
            continue
    return Page(items=items, total=len(addresses), limit=page.limit, offset=page.offset)


def create_list(
    ctx: Context, backend: ListsBackend | None, domain_name: str, values: ListValues
) -> MailingList:
    """Create a list in a hosted domain (the Mailman domain is made on first use)."""
    ctx.principal.require_write()
    domain = get_domain(ctx, domain_name)
    ctx.principal.require_domain_write(domain.name)
    name = check_list_name(values.name)
    # The whole address and its longest companion must be valid addresses.
    parse_address(f"{name}@{domain.name}", "name")
    parse_address(f"{name}-unsubscribe@{domain.name}", "name")
    display_name = _check_display_name(
        values.display_name if values.display_name is not None else name
    )
    subject_prefix = _check_subject_prefix(
        values.subject_prefix if values.subject_prefix is not None else f"[{name}] "
    )
    member_action, nonmember_action = _check_posting(values.posting)
    archiving = _check_bool(values.archiving, "archiving")
    description = _check_description(values.description)
    _ensure_addresses_free(ctx, name, domain.name)
    settings = ListSettings(
        display_name=display_name,
        subject_prefix=subject_prefix,
        description=description,
        archive_policy=ARCHIVE_ON if archiving else ARCHIVE_OFF,
        default_member_action=member_action,
        default_nonmember_action=nonmember_action,
    )
    created = _view(require_backend(backend).create_list(domain.name, name, settings))
    # Mailman has its table now; if Postfix does not route list addresses yet, it does
    # before this returns, so the first mail to the list is never refused.
    try:
        ctx.list_created()
    except MailyardError as exc:
        # The list exists; the periodic reconcile turns routing on. Until then mail to it
        # is refused, which the log says.
        log.warning("list %s created, but list routing is not on yet: %s", created.address, exc)
    return created


def get_list(ctx: Context, backend: ListsBackend | None, address: str) -> MailingList:
    parsed = _visible_list_address(ctx, address)
    return _view(require_backend(backend).get_list(str(parsed)))


def update_list(
    ctx: Context, backend: ListsBackend | None, address: str, changes: ListChanges
) -> MailingList:
    parsed = _writable_list_address(ctx, address)
    member_action = nonmember_action = None
    if changes.posting is not None:
        member_action, nonmember_action = _check_posting(changes.posting)
    archive_policy = None
    if changes.archiving is not None:
        archive_policy = ARCHIVE_ON if _check_bool(changes.archiving, "archiving") else ARCHIVE_OFF
    settings = ListSettings(
        display_name=None
        if changes.display_name is None
        else _check_display_name(changes.display_name),
        subject_prefix=None
        if changes.subject_prefix is None
        else _check_subject_prefix(changes.subject_prefix),
        description=None
        if changes.description is None
        else _check_description(changes.description),
        archive_policy=archive_policy,
        default_member_action=member_action,
        default_nonmember_action=nonmember_action,
    )
    lists = require_backend(backend)
    if not settings.changed():
        return _view(lists.get_list(str(parsed)))
    return _view(lists.update_list(str(parsed), settings))


def delete_list(ctx: Context, backend: ListsBackend | None, address: str) -> None:
    """Mailman deletes the list, its members and held messages; its addresses bounce."""
    parsed = _writable_list_address(ctx, address)
    require_backend(backend).delete_list(str(parsed))


def domain_list_addresses(backend: ListsBackend | None, domain: str) -> list[str]:
    """The lists of a domain, for refusing its deletion ([] with lists disabled)."""
    return [] if backend is None else backend.list_addresses(domain)


# --- members -------------------------------------------------------------------------------
def list_members(
    ctx: Context,
    backend: ListsBackend | None,
    address: str,
    page: PageRequest,
    role: str | None = None,
) -> Page[ListMember]:
    parsed = _visible_list_address(ctx, address)
    if role is not None:
        _check_role(role)
    result = require_backend(backend).list_members(str(parsed), role, page.offset, page.limit)
    return Page(items=result.items, total=result.total, limit=page.limit, offset=page.offset)


def add_member(
    ctx: Context,
    backend: ListsBackend | None,
    address: str,
    email: str,
    *,
    role: str = "member",
    display_name: str = "",
    delivery: bool | None = None,
) -> ListMember:
    """Add a member, owner or moderator at once (no confirmation mail, no approval)."""
    parsed = _writable_list_address(ctx, address)
    subscriber = _check_email(email)
    role = _check_role(role)
    if not isinstance(display_name, str):
        raise InvalidInput("display_name must be a string", field="display_name")
    display_name = check_text(display_name, "display_name", max_length=MAX_DISPLAY_NAME_LENGTH)
    if delivery is not None:
        _check_bool(delivery, "delivery")
    if role != "member" and delivery is False:
        raise InvalidInput(
            "delivery applies to the member role only: owners and moderators get the "
            "list's notices, not its posts",
            field="delivery",
        )
    return require_backend(backend).add_member(
        str(parsed), subscriber, role, display_name, True if delivery is None else delivery
    )


def _member_email(email: str, address: Address) -> str:
    try:
        return str(parse_address(email, "email", destination=True))
    except InvalidInput as exc:
        raise NotFound(f"'{email}' is not on mailing list '{address}'") from exc


def remove_member(
    ctx: Context, backend: ListsBackend | None, address: str, email: str, role: str = "member"
) -> None:
    parsed = _writable_list_address(ctx, address)
    role = _check_role(role)
    subscriber = _member_email(email, parsed)
    require_backend(backend).remove_member(str(parsed), subscriber, role)


def set_member_delivery(
    ctx: Context, backend: ListsBackend | None, address: str, email: str, delivery: bool
) -> ListMember:
    """Switch delivery of list posts to a member on or off (the member stays on the list)."""
    parsed = _writable_list_address(ctx, address)
    subscriber = _member_email(email, parsed)
    enabled = _check_bool(delivery, "delivery")
    return require_backend(backend).set_delivery(str(parsed), subscriber, enabled)


# --- held messages -------------------------------------------------------------------------
def list_held(
    ctx: Context, backend: ListsBackend | None, address: str, page: PageRequest
) -> Page[HeldMessage]:
    parsed = _visible_list_address(ctx, address)
    held = require_backend(backend).held_messages(str(parsed))
    items = held[page.offset : page.offset + page.limit]
    return Page(items=items, total=len(held), limit=page.limit, offset=page.offset)


def moderate_held(
    ctx: Context,
    backend: ListsBackend | None,
    address: str,
    request_id: int,
    action: str,
    *,
    reason: str | None = None,
) -> None:
    """The moderator's decision: accept (post it), discard (drop it silently) or reject
    (drop it and tell the poster, with `reason`)."""
    parsed = _writable_list_address(ctx, address)
    if isinstance(request_id, bool) or not 1 <= request_id <= MAX_HELD_ID:
        raise NotFound(f"no held message {request_id} on mailing list '{parsed}'")
    if action not in HELD_ACTIONS:
        raise InvalidInput(
            f"action '{action}' is not one of: {', '.join(HELD_ACTIONS)}", field="action"
        )
    if reason is not None:
        if action != "reject":
            raise InvalidInput(
                f"reason goes to the poster with a rejection only; leave it out for '{action}'",
                field="reason",
            )
        reason = check_text(reason, "reason", max_length=MAX_REASON_LENGTH) or None
    require_backend(backend).moderate_held(str(parsed), request_id, action, reason)
