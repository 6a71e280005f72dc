"""Request and response models per entity (Create / Update / Public).

Request models are strict (no type coercion, no unknown fields); semantic validation
(IDNA, address syntax, injection-safe characters) happens in the domain layer so the
`mailyard` command gets exactly the same checks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from controller.db.models import Alias, AliasDomain, ApiToken, Domain, Mailbox, RelayDomain
from controller.domain import pagination

T = TypeVar("T")

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
    created_at: datetime
    updated_at: datetime

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
    created_at: datetime
    updated_at: datetime

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
    created_at: datetime
    updated_at: datetime

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
    created_at: datetime
    updated_at: datetime

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
    created_at: datetime
    updated_at: datetime

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
        description="Domains a non-admin token may act on.",
    )
    read_only: bool = False


class TokenPublic(BaseModel):
    id: int
    name: str
    admin: bool
    domains: list[str]
    read_only: bool
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, token: ApiToken) -> TokenPublic:
        return cls(
            id=token.id,
            name=token.name,
            admin=token.is_admin,
            domains=sorted(entry.domain for entry in token.domains),
            read_only=token.read_only,
            created_at=token.created_at,
            last_used_at=token.last_used_at,
        )


class TokenCreated(TokenPublic):
    token: str = Field(description="The bearer token. Shown only in this response: store it now.")
