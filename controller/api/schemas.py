"""Request and response models, one family per entity.

As in full-stack-fastapi-template: `<Entity>Base` holds the fields a request and the
answer share, `<Entity>Create` / `<Entity>Update` are requests, `<Entity>Public` is the
answer. A Public model is read from the domain layer's object by attribute
(`from_attributes`, `Public.model_validate(row)`); the few values the domain layer
computes (a token's scope, a DKIM key's DNS record) are added by the model itself
(`with_attributes`), so no route copies fields by hand.

Request models are strict (no type coercion, no unknown fields); semantic validation
(IDNA, address syntax, injection-safe characters) happens in the domain layer so the
`mailyard` command gets exactly the same checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    create_model,
    model_validator,
)

from controller.db.models import FILTER_SPAM_ACTIONS, FILTER_VIRUS_ACTIONS, Alias, ApiToken, DkimKey
from controller.domain import dkim, pagination, tokens
from controller.domain.filter_policies import BANNED_CATEGORIES
from controller.domain.list_service import HELD_ACTIONS, ROLES
from controller.domain.lists import POSTING_POLICIES
from controller.domain.mail_settings import SECRET_SETTINGS, MailSettings
from controller.domain.validation import (
    MAX_ADDRESS_LENGTH,
    MAX_DOMAIN_LENGTH,
    MAX_PASSWORD_LENGTH,
    MAX_TEXT_LENGTH,
    MIN_PASSWORD_LENGTH,
)

T = TypeVar("T")


def _as_utc(moment: datetime) -> datetime:
    # The database keeps UTC without an offset; an answer says so (RFC 3339 date-time,
    # as the schema declares), e.g. 2026-12-06T09:56:40Z.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]

# The domain layer's length limits, stated in the schema too (a client sees them there);
# everything else (IDNA, address syntax, control characters) is checked in the domain.
_NAME = Field(max_length=MAX_DOMAIN_LENGTH, examples=["example.org"])
_ADDRESS = Field(max_length=MAX_ADDRESS_LENGTH, examples=["alice@example.org"])
_PASSWORD = Field(
    min_length=MIN_PASSWORD_LENGTH,
    max_length=MAX_PASSWORD_LENGTH,
    repr=False,
    description="Printable characters, no control characters.",
)
DEFAULT_QUOTA_MB = 1024


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Public(BaseModel):
    """An answer, read from an object's attributes. Every field is in every answer, so
    the schema marks them all required (also those with a default in a Base)."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_serialization_defaults_required=True
    )


class with_attributes:  # noqa: N801 - used like a function
    """`obj` with some attributes added or replaced: the values a Public model shows
    that the object does not carry itself (computed by the domain layer)."""

    def __init__(self, obj: object, **attributes: Any) -> None:
        self._obj = obj
        self._attributes = attributes

    def __getattr__(self, name: str) -> Any:
        if name in self._attributes:
            return self._attributes[name]
        return getattr(self._obj, name)


def _name_of(value: Any) -> Any:
    """A related row (a Domain) as its name; a name stays as it is."""
    return value if isinstance(value, str) else getattr(value, "name", value)


# A related domain row shown by its name.
DomainName = Annotated[str, BeforeValidator(_name_of)]


def one_of(values: Iterable[str]) -> WithJsonSchema:
    """The schema of a string that is one of `values`. Only the schema: the domain layer
    checks the value (with its own message, the same for the `mailyard` command)."""
    return WithJsonSchema({"type": "string", "enum": list(values)})


SpamAction = Annotated[str, one_of(FILTER_SPAM_ACTIONS)]
VirusAction = Annotated[str, one_of(FILTER_VIRUS_ACTIONS)]
BannedCategory = Annotated[str, one_of(BANNED_CATEGORIES)]
DkimAlgorithm = Annotated[str, one_of(dkim.ALGORITHMS)]
Posting = Annotated[str, one_of(POSTING_POLICIES)]
Role = Annotated[str, one_of(ROLES)]
HeldAction = Annotated[str, one_of(HELD_ACTIONS)]


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
class DomainBase(BaseModel):
    name: str = _NAME
    description: str = Field(default="", max_length=MAX_TEXT_LENGTH)
    active: bool = True


class DomainCreate(DomainBase, Request):
    pass


class DomainUpdate(Request):
    description: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    active: bool | None = None


class DomainPublic(DomainBase, Public):
    name: str = Field(description="Lowercase IDNA A-label form, as Postfix sees it.")
    description: str
    active: bool
    created_at: UtcDateTime
    updated_at: UtcDateTime


# --- mailboxes -----------------------------------------------------------------------------
class MailboxBase(BaseModel):
    address: str = _ADDRESS


class MailboxCreate(MailboxBase, Request):
    password: str = _PASSWORD
    quota_mb: int | None = Field(
        default=None,
        description="MiB; 0 means unlimited. Omitted: the default_quota_mb setting "
        f"(initially {DEFAULT_QUOTA_MB}).",
    )
    active: bool = True


class MailboxUpdate(Request):
    password: str | None = Field(
        default=None,
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        repr=False,
        description=_PASSWORD.description,
    )
    quota_mb: int | None = None
    active: bool | None = None


class MailboxPublic(MailboxBase, Public):
    domain: DomainName
    quota_mb: int
    active: bool
    created_at: UtcDateTime
    updated_at: UtcDateTime


# --- aliases -------------------------------------------------------------------------------
class AliasBase(BaseModel):
    address: str = Field(
        max_length=MAX_ADDRESS_LENGTH,
        description="The alias address, or '@domain' for a catch-all.",
        examples=["team@example.org", "@example.org"],
    )


class AliasCreate(AliasBase, Request):
    destinations: list[str] = Field(max_length=1000, examples=[["alice@example.org"]])
    active: bool = True


class AliasUpdate(Request):
    destinations: list[str] | None = Field(default=None, max_length=1000)
    active: bool | None = None


class AliasPublic(AliasBase, Public):
    domain: DomainName
    catch_all: bool
    destinations: list[str]
    active: bool
    created_at: UtcDateTime
    updated_at: UtcDateTime

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        if isinstance(data, Alias):
            return with_attributes(
                data,
                catch_all=data.address.startswith("@"),
                destinations=[d.address for d in data.destinations],
            )
        return data


# --- alias domains -------------------------------------------------------------------------
class AliasDomainBase(BaseModel):
    name: str = _NAME
    target_domain: str = Field(max_length=MAX_DOMAIN_LENGTH, examples=["example.org"])
    active: bool = True


class AliasDomainCreate(AliasDomainBase, Request):
    pass


class AliasDomainUpdate(Request):
    active: bool | None = None


class AliasDomainPublic(AliasDomainBase, Public):
    target_domain: DomainName
    created_at: UtcDateTime
    updated_at: UtcDateTime


# --- relay domains -------------------------------------------------------------------------
class RelayDomainBase(BaseModel):
    name: str = _NAME
    nexthop: str | None = Field(
        default=None,
        max_length=1024,
        description="Where to forward: 'host', 'host:port', '[host]:port' (no MX lookup). "
        "Empty: the domain's MX hosts.",
        examples=["[mx1.example.net]:25"],
    )
    active: bool = True


class RelayDomainCreate(RelayDomainBase, Request):
    pass


class RelayDomainUpdate(Request):
    nexthop: str | None = Field(default=None, max_length=1024, description="null clears it.")
    active: bool | None = None


class RelayDomainPublic(RelayDomainBase, Public):
    created_at: UtcDateTime
    updated_at: UtcDateTime


# --- tokens --------------------------------------------------------------------------------
# No TokenBase: a token's answer starts with its id, and its request names the scope by
# domain names it cannot give back (the scope follows the domains, not their names).
class TokenCreate(Request):
    name: str = Field(
        max_length=100,  # as controller/domain/tokens.py checks
        examples=["hosting panel"],
    )
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


class TokenPublic(Public):
    id: int
    name: str
    admin: bool = Field(validation_alias=AliasChoices("admin", "is_admin"))
    domains: list[str]
    read_only: bool
    created_at: UtcDateTime
    expires_at: UtcDateTime | None = Field(description="UTC; null: never expires.")
    networks: list[str] = Field(description="Client networks it may be used from; [] = any.")
    last_used_at: UtcDateTime | None = Field(description="UTC, to the minute.")
    last_used_from: str | None = Field(description="Client address of the last use.")

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        if isinstance(data, ApiToken):
            return with_attributes(
                data, domains=tokens.scope_names(data), networks=tokens.token_networks(data)
            )
        return data


class TokenCreated(TokenPublic):
    token: str = Field(description="The bearer token. Shown only in this response: store it now.")


# --- DKIM and DNS --------------------------------------------------------------------------
class DkimRotate(Request):
    algorithm: DkimAlgorithm | None = Field(
        default=None,
        max_length=32,
        description="rsa-2048 (default), rsa-3072, rsa-4096 or ed25519.",
        examples=["rsa-2048"],
    )


class DkimKeyPublic(Public):
    """A DKIM key as the API shows it: never the private key."""

    selector: str
    algorithm: str
    state: str = Field(description="active (signs), published (in DNS, waiting), retired.")
    dns_name: str = Field(description="Where the TXT record goes, e.g. mly202611._domainkey.")
    dns_value: str = Field(description="The TXT record's value.")
    created_at: UtcDateTime
    activated_at: UtcDateTime | None

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        if isinstance(data, DkimKey):
            return with_attributes(
                data,
                dns_name=f"{dkim.record_name(data.selector)}.{data.domain.name}",
                dns_value=dkim.txt_value(data.algorithm, data.public_key),
            )
        return data


class DkimKeys(BaseModel):
    domain: str
    keys: list[DkimKeyPublic]


class DnsRecordPublic(Public):
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
    spam_action: SpamAction = Field(max_length=64, description="quarantine, reject or deliver.")
    virus_action: VirusAction = Field(max_length=64, description="quarantine or reject.")
    banned_categories: list[BannedCategory] = _BANNED
    spam_to_junk: bool = Field(description="File tagged spam into the Junk folder.")


class FilterPolicyUpdate(Request):
    spam_tag_score: float | None = None
    spam_action_score: float | None = None
    spam_action: SpamAction | None = Field(default=None, max_length=64)
    virus_action: VirusAction | None = Field(default=None, max_length=64)
    banned_categories: list[BannedCategory] | None = Field(
        default=None, max_length=len(BANNED_CATEGORIES) * 4
    )
    spam_to_junk: bool | None = None


class FilterPolicyPublic(Public):
    domain: str
    spam_tag_score: float
    spam_action_score: float
    spam_action: str
    virus_action: str
    banned_categories: list[str]
    spam_to_junk: bool
    is_default: bool = Field(description="True when the domain never changed the defaults.")


# --- quarantine ----------------------------------------------------------------------------
class QuarantineRecipientPublic(Public):
    address: str
    released: bool = Field(description="Released to this recipient through the API.")


class QuarantineEntryPublic(Public):
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


class QuarantineRelease(Request):
    recipient: str | None = Field(
        default=None,
        max_length=1024,
        description="Release to this recipient only; absent: to every recipient you see.",
    )


class QuarantineReleased(Public):
    mail_id: str
    released_to: list[str] = Field(description="Empty: every original recipient.")
    amavis_reply: list[str] = Field(description="Amavis's answer, e.g. '250 2.0.0 Ok'.")


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
    posting: Posting = Field(
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
    posting: Posting | None = Field(default=None, max_length=64)
    archiving: bool | None = None
    description: str | None = Field(default=None, max_length=1024)


class MailingListPublic(Public):
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


class ListMemberCreate(Request):
    email: str = _ADDRESS
    role: Role = Field(default="member", max_length=64, description="member, owner or moderator.")
    display_name: str = Field(default="", max_length=1024)
    delivery: bool | None = Field(
        default=None, description="Members only: receive the list's posts (default true)."
    )


class ListMemberUpdate(Request):
    delivery: bool = Field(description="Receive the list's posts (role member).")


class ListMemberPublic(Public):
    email: str
    role: str
    display_name: str
    delivery: bool | None = Field(description="Role member only; null for owners, moderators.")


class HeldMessagePublic(Public):
    id: int = Field(validation_alias=AliasChoices("id", "request_id"))
    sender: str
    subject: str
    reason: str = Field(
        description="Why Mailman held it, e.g. 'The message is not from a list member'."
    )
    received: UtcDateTime | None = Field(description="When it was held (UTC).")


class HeldMessageModerate(Request):
    action: HeldAction = Field(max_length=64, description="accept, discard or reject.")
    reason: str | None = Field(
        default=None, max_length=1024, description="reject only: told to the poster."
    )


class HeldMessageModerated(BaseModel):
    id: int
    action: str


# --- settings, plan and applies ------------------------------------------------------------
# The engine (controller/engine) answers with plain dicts of these shapes; the routes
# validate them into these models, so the schema states every field.
MASKED = "********"


def _settings_values_model() -> type[BaseModel]:
    """The settings as GET /api/v1/settings shows them: MailSettings' fields with their
    types and limits, secrets as '********' (set) or null."""
    fields: dict[str, Any] = {}
    for name, info in MailSettings.model_fields.items():
        if name in SECRET_SETTINGS:
            description = f"{info.description} Shows '{MASKED}' when set, null when not."
            fields[name] = (str | None, Field(description=description))
        else:
            annotation = (
                Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
            )
            fields[name] = (annotation, Field(description=info.description))
    return create_model(
        "SettingsValues",
        __config__=ConfigDict(json_schema_serialization_defaults_required=True),
        __doc__="Every setting's effective value (GET /api/v1/settings/schema describes them).",
        **fields,
    )


if TYPE_CHECKING:

    class SettingsValues(BaseModel):
        pass

else:
    SettingsValues = _settings_values_model()


class SettingChange(BaseModel):
    name: str = Field(description="The setting.")
    old: Any = Field(description="Its value before (secrets masked).")
    new: Any = Field(description="Its value after (secrets masked).")


class ReplicaStepPublic(BaseModel):
    container: str
    from_release: str | None = Field(description="The release it ran before; null: none.")
    to_release: str
    reload_ms: int
    gate_ms: int = Field(description="How long the health gate took.")
    outcome: str = Field(description="pending, ok, failed or gate_failed.")
    message: str = Field(description="Why it failed (the daemon's words); empty when ok.")


class ServiceApplyPublic(BaseModel):
    from_release: str | None = Field(description="The committed release before; null: none.")
    to_release: str
    reasons: list[str] = Field(description="Why the service needed the apply.")
    replicas: list[ReplicaStepPublic] = Field(description="One step per container, in order.")


class ApplyPublic(BaseModel):
    """One apply: when, by whom, what changed, outcome, duration (never the previous
    settings: they hold secrets)."""

    id: int
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None = Field(description="null while in progress.")
    actor: str = Field(description="The token's name, or what started it (startup, reconcile).")
    trigger: str = Field(
        description="api, reconcile, startup, recovery, lists, certificate or mailyard command."
    )
    status: str = Field(
        description="in_progress, succeeded, invalid, rolled_back, interrupted, "
        "completed_after_restart, undone_after_restart or failed."
    )
    changes: list[SettingChange]
    services: dict[str, ServiceApplyPublic] = Field(description="Per service it touched.")
    warnings: list[str] = Field(description="What the daemons warned about while validating.")
    error: str | None
    duration_ms: int | None


class ServicePlan(BaseModel):
    running_release: str | None = Field(description="The committed release; null: none yet.")
    desired_release: str = Field(description="The digest of the release that would run.")
    changed: bool = Field(description="An apply would touch this service.")
    replicas: dict[str, str | None] = Field(description="Container name: the release it runs.")
    drift: list[str] = Field(description="Files of the running release edited by hand.")
    diff: str = Field(description="Unified diff, running to desired (secrets masked).")


class PlanPublic(BaseModel):
    changes: list[SettingChange]
    services: dict[str, ServicePlan]
