"""/api/v1/blocks: client addresses blocked after failed logins, and lifting a block."""

from __future__ import annotations

from fastapi import APIRouter, Path, Response, status
from pydantic import AliasChoices, Field

from controller.api.deps import ContextDep, PageDep
from controller.api.schemas import Page, Public, UtcDateTime, page_of
from controller.domain import blocks

router = APIRouter(prefix="/blocks", tags=["blocks"])


class BlockPublic(Public):
    address: str = Field(
        description="The client address: an IPv4 address, or an IPv6 /64 network.",
        examples=["192.0.2.7", "2001:db8:1:2::/64"],
    )
    failures: int = Field(description="Failed logins counted in the window that led to it.")
    first_failure_at: UtcDateTime = Field(
        validation_alias=AliasChoices("first_failure_at", "window_started_at"),
        description="Start of that window (UTC).",
    )
    last_failure_at: UtcDateTime = Field(description="The last failed login (UTC).")
    blocked_at: UtcDateTime | None = Field(description="When the block began (UTC).")
    blocked_until: UtcDateTime | None = Field(
        description="When it ends by itself (UTC), unless lifted first."
    )
    last_username: str = Field(description="The last user name tried (at most 64 characters).")
    last_protocol: str = Field(description="imap, pop3, sieve (ManageSieve) or smtp (AUTH).")


@router.get("")
def list_blocks(ctx: ContextDep, page: PageDep) -> Page[BlockPublic]:
    """Addresses refused now after too many failed logins (admin tokens only); the
    thresholds are the login_* settings."""
    return page_of(blocks.list_blocks(ctx, page), BlockPublic.model_validate)


@router.delete("/{address:path}", status_code=status.HTTP_204_NO_CONTENT)
def lift_block(
    ctx: ContextDep,
    address: str = Path(
        max_length=1024,
        description="An IPv4 address, or an IPv6 address or its /64 (e.g. 2001:db8:1:2::/64).",
    ),
) -> Response:
    """Lift a block and forget the address's failures: its next login is judged afresh.
    404 when the address is not blocked, 422 when it is not an address."""
    blocks.lift_block(ctx, address)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
