"""Request and response models per entity (Create / Update / Public).

Request models are strict (no type coercion, no unknown fields); semantic validation
(IDNA, address syntax, injection-safe characters) happens in the domain layer so the
`mailyard` command gets exactly the same checks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from controller.db.models import (
    Alias,
    AliasDomain,
    ApiToken,
    DkimKey,
    Domain,
    Mailbox,
    RelayDomain,
)
from controller.domain import dkim, lists, pagination, tokens
from controller.domain.filter_policies import BANNED_CATEGORIES, FilterPolicy
from controller.domain.list_service import HeldMessage, ListMember
from controller.domain.quarantine import QuarantineEntry, ReleaseOutcome

T = TypeVar("T")


def _as_utc(moment: datetime) -> datetime:
    # The database keeps UTC without an offset; an answer says so (RFC 3339 date-time,
    # as the schema declares), e.g. 2026-12-06T09:56:40Z.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]

# Generous outer bounds so absurd payloads fail fast; exact limits live in the domain.
_NAME = Field(max_length=1024, examples=["example.org"])
_ADDRESS = Field(max_length=1024, examples=["alice@example.org"])
DEFAULT_QUOTA_MB = 1024


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="Items matching, across all pages.")
    limit: int
    offset: int


def page_of(result: pagination.Page[Any], convert: Callable[[Any], T]) -> Page[T]:
    """A response page from a domain page, converting each item."""
    return Page[T](
        items=[convert(item) for item in result.items],
        total=result.total,
        limit=result.limit,
        offset=result.offset,
    )


# --- domains -------------------------------------------------------------------------------
class DomainCreate(Request):
    name: str = _NAME
    description: str = Field(default="", max_length=1024)
    active: bool = True


class DomainUpdate(Request):
    description: str | None = Field(default=None, max_length=1024)
    active: bool | None = None


class DomainPublic(BaseModel):
    name: str = Field(description="Lowercase IDNA A-label form, as Postfix sees it.")
    description: str
    active: bool
    created_at: UtcDateTime
    updated_at: UtcDateTime

    @classmethod
    def of(cls, domain: Domain) -> DomainPublic:
        return cls(
            name=domain.name,
            description=domain.description,
            active=domain.active,
            created_at=domain.created_at,
            updated_at=domain.updated_at,
        )


# --- mailboxes -----------------------------------------------------------------------------
class MailboxCreate(Request):
    address: str = _ADDRESS
    password: str = Field(max_length=4096, repr=False)
    quota_mb: int | None = Field(
        default=None,
        description="MiB; 0 means unlimited. Omitted: the default_quota_mb setting "
        f"(initially {DEFAULT_QUOTA_MB}).",
    )
    active: bool = True


class MailboxUpdate(Request):
    password: str | None = Field(default=None, max_length=4096, repr=False)
    quota_mb: int | None = None
    active: bool | None = None


class MailboxPublic(BaseModel):
    address: str
    domain: str
    quota_mb: int
    active: bool
    created_at: UtcDateTime
    updated_at: UtcDateTime

    @classmethod
    def of(cls, mailbox: Mailbox) -> MailboxPublic:
        return cls(
            address=mailbox.address,
            domain=mailbox.domain.name,
            quota_mb=mailbox.quota_mb,
            active=mailbox.active,
            created_at=mailbox.created_at,
            updated_at=mailbox.updated_at,
        )


# --- aliases -------------------------------------------------------------------------------
class AliasCreate(Request):
    address: str = Field(
        max_length=1024,
        description="The alias address, or '@domain' for a catch-all.",
        examples=["team@example.org", "@example.org"],
    )
    destinations: list[str] = Field(max_length=1000, examples=[["alice@example.org"]])
    active: bool = True


class AliasUpdate(Request):
    destinations: list[str] | None = Field(default=None, max_length=1000)
    active: bool | None = None


class AliasPublic(BaseModel):
    address: str
    domain: str
    catch_all: bool
    destinations: list[str]
    active: bool
    created_at: UtcDateTime
    updated_at: UtcDateTime

    @classmethod
    def of(cls, alias: Alias) -> AliasPublic:
        return cls(
            address=alias.address,
            domain=alias.domain.name,
            catch_all=alias.address.startswith("@"),
            destinations=[d.address for d in alias.destinations],
            active=alias.active,
            created_at=alias.created_at,
            updated_at=alias.updated_at,
        )


# --- alias domains -------------------------------------------------------------------------
class AliasDomainCreate(Request):
    name: str = _NAME
    target_domain: str = Field(max_length=1024, examples=["example.org"])
    active: bool = True


class AliasDomainUpdate(Request):
    active: bool | None = None


class AliasDomainPublic(BaseModel):
    name: str
    target_domain: str
    active: bool
    created_at: UtcDateTime
    updated_at: UtcDateTime

    @classmethod
    def of(cls, alias_domain: AliasDomain) -> AliasDomainPublic:
        return cls(
            name=alias_domain.name,
            target_domain=alias_domain.target_domain.name,
            active=alias_domain.active,
            created_at=alias_domain.created_at,
            updated_at=alias_domain.updated_at,
        )


# --- relay domains -------------------------------------------------------------------------
class RelayDomainCreate(Request):
    name: str = _NAME
    nexthop: str | None = Field(
        default=None,
        max_length=1024,
        description="Where to forward: 'host', 'host:port', '[host]:port' (no MX lookup). "
        "Empty: the domain's MX hosts.",
        examples=["[mx1.example.net]:25"],
    )
    active: bool = True


class RelayDomainUpdate(Request):
    nexthop: str | None = Field(default=None, max_length=1024, description="null clears it.")
    active: bool | None = None


class RelayDomainPublic(BaseModel):
    name: str
    nexthop: str | None
    active: bool
    created_at: UtcDateTime
    updated_at: UtcDateTime

    @classmethod
    def of(cls, relay: RelayDomain) -> RelayDomainPublic:
        return cls(
            name=relay.name,
            nexthop=relay.nexthop,
            active=relay.active,
            created_at=relay.created_at,
            updated_at=relay.updated_at,
        )


# --- tokens --------------------------------------------------------------------------------
class TokenCreate(Request):
    name: str = Field(max_length=1024, examples=["hosting panel"])
    admin: bool = Field(default=False, description="Admin tokens act on every domain.")
    domains: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="Domains a non-admin token may act on: hosted (or relay) domains "
        "that exist now. The token is bound to them, not to their names: a domain "
        "deleted and created again is no longer in its scope.",
    )
    read_only: bool = False
    # strict=False: JSON has no date type, so the time arrives as an ISO 8601 string.
    expires_at: datetime | None = Field(
        default=None,
        strict=False,
        description="When the token stops working (ISO 8601; UTC unless it carries an "
        "offset). At most ten years ahead. Or give expires_in_days.",
        examples=["2027-06-30T00:00:00Z"],
    )
    expires_in_days: int | None = Field(
        default=None,
        description="Days from now until the token stops working (1-3650). Or give "
        "expires_at; neither: it never expires.",
        examples=[90],
    )
    networks: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=32,
        description="Client networks (CIDR, or single addresses) the token may be used "
        "from, as the controller sees the client's address; empty: any address.",
        examples=[["203.0.113.0/24", "2001:db8::/48"]],
    )


class TokenPublic(BaseModel):
    id: int
    name: str
    admin: bool
    domains: list[str]
    read_only: bool
    created_at: UtcDateTime
    expires_at: UtcDateTime | None = Field(description="UTC; null: never expires.")
    networks: list[str] = Field(description="Client networks it may be used from; [] = any.")
    last_used_at: UtcDateTime | None = Field(description="UTC, to the minute.")
    last_used_from: str | None = Field(description="Client address of the last use.")

    @classmethod
    def of(cls, token: ApiToken) -> TokenPublic:
        return cls(
            id=token.id,
            name=token.name,
            admin=token.is_admin,
            domains=tokens.scope_names(token),
            read_only=token.read_only,
            created_at=token.created_at,
            expires_at=token.expires_at,
            networks=tokens.token_networks(token),
            last_used_at=token.last_used_at,
            last_used_from=token.last_used_from,
        )


class TokenCreated(TokenPublic):
    token: str = Field(description="The bearer token. Shown only in this response: store it now.")


# --- DKIM and DNS --------------------------------------------------------------------------
class DkimRotate(Request):
    algorithm: str | None = Field(
        default=None,
        max_length=32,
        description="rsa-2048 (default), rsa-3072, rsa-4096 or ed25519.",
        examples=["rsa-2048"],
    )


class DkimKeyPublic(BaseModel):
    """A DKIM key as the API shows it: never the private key."""

    selector: str
    algorithm: str
    state: str = Field(description="active (signs), published (in DNS, waiting), retired.")
    dns_name: str = Field(description="Where the TXT record goes, e.g. mly202611._domainkey.")
    dns_value: str = Field(description="The TXT record's value.")
    created_at: UtcDateTime
    activated_at: UtcDateTime | None

    @classmethod
    def of(cls, key: DkimKey, domain: str) -> DkimKeyPublic:
        return cls(
            selector=key.selector,
            algorithm=key.algorithm,
            state=key.state,
            dns_name=f"{dkim.record_name(key.selector)}.{domain}",
            dns_value=dkim.txt_value(key.algorithm, key.public_key),
            created_at=key.created_at,
            activated_at=key.activated_at,
        )


class DkimKeys(BaseModel):
    domain: str
    keys: list[DkimKeyPublic]


class DnsRecordPublic(BaseModel):
    name: str = Field(description="Fully qualified name, without the trailing dot.")
    type: str
    ttl: int
    value: str = Field(description="Presentation form; TXT values unquoted.")
    purpose: str
    section: str = Field(
        description="domain: the domain's zone; host: the mail hostname's zone; "
        "reverse: the address owner's reverse zone."
    )
    placeholder: bool = Field(description="True when the value must be replaced first.")


class DnsRecords(BaseModel):
    domain: str
    hostname: str
    records: list[DnsRecordPublic]


# --- content filter policies ---------------------------------------------------------------
_BANNED = Field(
    max_length=len(BANNED_CATEGORIES) * 4,
    description="Blocked attachment kinds, any of: " + ", ".join(BANNED_CATEGORIES) + ".",
    examples=[["executables", "office-macros"]],
)


class FilterPolicyReplace(Request):
    """Every field; the policy is replaced as a whole (strict numbers: 5 or 5.0)."""

    spam_tag_score: float = Field(description="At or above: X-Spam-Flag: YES.")
    spam_action_score: float = Field(description="At or above: spam_action.")
    spam_action: str = Field(max_length=64, description="quarantine, reject or deliver.")
    virus_action: str = Field(max_length=64, description="quarantine or reject.")
    banned_categories: list[str] = _BANNED
    spam_to_junk: bool = Field(description="File tagged spam into the Junk folder.")


class FilterPolicyUpdate(Request):
    spam_tag_score: float | None = None
    spam_action_score: float | None = None
    spam_action: str | None = Field(default=None, max_length=64)
    virus_action: str | None = Field(default=None, max_length=64)
    banned_categories: list[str] | None = Field(default=None, max_length=len(BANNED_CATEGORIES) * 4)
    spam_to_junk: bool | None = None


class FilterPolicyPublic(BaseModel):
    domain: str
    spam_tag_score: float
    spam_action_score: float
    spam_action: str
    virus_action: str
    banned_categories: list[str]
    spam_to_junk: bool
    is_default: bool = Field(description="True when the domain never changed the defaults.")

    @classmethod
    def of(cls, policy: FilterPolicy) -> FilterPolicyPublic:
        return cls(
            domain=policy.domain,
            spam_tag_score=policy.spam_tag_score,
            spam_action_score=policy.spam_action_score,
            spam_action=policy.spam_action,
            virus_action=policy.virus_action,
            banned_categories=list(policy.banned_categories),
            spam_to_junk=policy.spam_to_junk,
            is_default=policy.is_default,
        )


# --- quarantine ----------------------------------------------------------------------------
class QuarantineRecipientPublic(BaseModel):
    address: str
    released: bool = Field(description="Released to this recipient through the API.")


class QuarantineEntryPublic(BaseModel):
    mail_id: str
    received_at: UtcDateTime = Field(description="When Amavis received it (UTC).")
    content: str = Field(description="virus, spam or banned.")
    sender: str = Field(description="Envelope sender; empty for bounces.")
    recipients: list[QuarantineRecipientPublic] = Field(
        description="Envelope recipients (a domain-scoped token sees its domains' only)."
    )
    subject: str
    from_header: str = Field(description="The From: header field.")
    message_id: str = Field(description="The Message-ID: header field.")
    spam_score: float | None
    size: int = Field(description="Bytes.")

    @classmethod
    def of(cls, entry: QuarantineEntry) -> QuarantineEntryPublic:
        return cls(
            mail_id=entry.mail_id,
            received_at=entry.received_at,
            content=entry.content,
            sender=entry.sender,
            recipients=[
                QuarantineRecipientPublic(address=r.address, released=r.released)
                for r in entry.recipients
            ],
            subject=entry.subject,
            from_header=entry.from_header,
            message_id=entry.message_id,
            spam_score=entry.spam_score,
            size=entry.size,
        )


class QuarantineRelease(Request):
    recipient: str | None = Field(
        default=None,
        max_length=1024,
        description="Release to this recipient only; absent: to every recipient you see.",
    )


class QuarantineReleased(BaseModel):
    mail_id: str
    released_to: list[str] = Field(description="Empty: every original recipient.")
    amavis_reply: list[str] = Field(description="Amavis's answer, e.g. '250 2.0.0 Ok'.")

    @classmethod
    def of(cls, outcome: ReleaseOutcome) -> QuarantineReleased:
        return cls(
            mail_id=outcome.mail_id,
            released_to=list(outcome.released_to),
            amavis_reply=list(outcome.amavis_reply),
        )


# --- mailing lists (state lives in Mailman, docs/design/mailman.md) -----------------------
class MailingListCreate(Request):
    name: str = Field(
        max_length=1024,
        description="The part before the '@' (lowercase letters, digits, '.', '_', '-').",
        examples=["team"],
    )
    display_name: str | None = Field(
        default=None, max_length=1024, description="Default: the name."
    )
    subject_prefix: str | None = Field(
        default=None, max_length=1024, description='Default: "[<name>] "; "" for none.'
    )
    posting: str = Field(
        default="members",
        max_length=64,
        description="members (others are held), anyone, or moderated (every post is held).",
    )
    archiving: bool = Field(
        default=False, description="Archive policy public/never (no archiver runs yet)."
    )
    description: str = Field(default="", max_length=1024)


class MailingListUpdate(Request):
    display_name: str | None = Field(default=None, max_length=1024)
    subject_prefix: str | None = Field(default=None, max_length=1024)
    posting: str | None = Field(default=None, max_length=64)
    archiving: bool | None = None
    description: str | None = Field(default=None, max_length=1024)


class MailingListPublic(BaseModel):
    address: str
    domain: str
    name: str
    display_name: str
    subject_prefix: str
    posting: str = Field(
        description="members, anyone or moderated; custom when Mailman's actions were "
        "changed outside this API."
    )
    archiving: bool
    description: str
    member_count: int = Field(description="Members (role member) only.")

    @classmethod
    def of(cls, item: lists.MailingList) -> MailingListPublic:
        return cls(
            address=item.address,
            domain=item.domain,
            name=item.name,
            display_name=item.display_name,
            subject_prefix=item.subject_prefix,
            posting=item.posting,
            archiving=item.archiving,
            description=item.description,
            member_count=item.member_count,
        )


class ListMemberCreate(Request):
    email: str = _ADDRESS
    role: str = Field(default="member", max_length=64, description="member, owner or moderator.")
    display_name: str = Field(default="", max_length=1024)
    delivery: bool | None = Field(
        default=None, description="Members only: receive the list's posts (default true)."
    )


class ListMemberUpdate(Request):
    delivery: bool = Field(description="Receive the list's posts (role member).")


class ListMemberPublic(BaseModel):
    email: str
    role: str
    display_name: str
    delivery: bool | None = Field(description="Role member only; null for owners, moderators.")

    @classmethod
    def of(cls, member: ListMember) -> ListMemberPublic:
        return cls(
            email=member.email,
            role=member.role,
            display_name=member.display_name,
            delivery=member.delivery,
        )


class HeldMessagePublic(BaseModel):
    id: int
    sender: str
    subject: str
    reason: str = Field(
        description="Why Mailman held it, e.g. 'The message is not from a list member'."
    )
    received: UtcDateTime | None = Field(description="When it was held (UTC).")

    @classmethod
    def of(cls, message: HeldMessage) -> HeldMessagePublic:
        return cls(
            id=message.request_id,
            sender=message.sender,
            subject=message.subject,
            reason=message.reason,
            received=message.received,
        )


class HeldMessageModerate(Request):
    action: str = Field(max_length=64, description="accept, discard or reject.")
    reason: str | None = Field(
        default=None, max_length=1024, description="reject only: told to the poster."
    )


class HeldMessageModerated(BaseModel):
    id: int
    action: str
