"""/api/v1/domains/{name}/lists and /api/v1/lists/{address}: mailing lists.

Mailman (mailman-core) owns every list, member and held message; these routes check the
caller and the values (controller/domain/lists.py) and ask Mailman through the backend in
`app.state.lists` (None when lists are disabled: 503). Admin tokens and tokens scoped to
the list's domain; read-only tokens only read.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from controller.api.deps import ContextDep, PageDep, RowId
from controller.api.schemas import (
    HeldMessageModerate,
    HeldMessageModerated,
    HeldMessagePublic,
    ListMemberCreate,
    ListMemberPublic,
    ListMemberUpdate,
    MailingListCreate,
    MailingListPublic,
    MailingListUpdate,
    Page,
    Role,
    page_of,
)
from controller.domain import lists
from controller.domain.list_service import ListsBackend

log = logging.getLogger(__name__)

router = APIRouter(tags=["mailing lists"])


def get_lists_backend(request: Request) -> ListsBackend | None:
    """The list service facade; None when mailing lists are disabled."""
    backend: ListsBackend | None = getattr(request.app.state, "lists", None)
    return backend


ListsDep = Annotated[ListsBackend | None, Depends(get_lists_backend)]
Address = Annotated[str, Path(max_length=1024, description="The list's posting address.")]
Email = Annotated[str, Path(max_length=1024, description="The member's e-mail address.")]
RoleQuery = Annotated[
    Role, Query(max_length=64, description="member (default), owner or moderator.")
]


# --- lists ---------------------------------------------------------------------------------
@router.get("/domains/{name}/lists")
def list_lists(
    ctx: ContextDep, backend: ListsDep, page: PageDep, name: str
) -> Page[MailingListPublic]:
    return page_of(lists.list_lists(ctx, backend, name, page), MailingListPublic.model_validate)


@router.post("/domains/{name}/lists", status_code=status.HTTP_201_CREATED)
def create_list(
    request: Request, ctx: ContextDep, backend: ListsDep, name: str, body: MailingListCreate
) -> MailingListPublic:
    values = lists.ListValues(**body.model_dump())
    return MailingListPublic.model_validate(lists.create_list(ctx, backend, name, values))


@router.get("/lists/{address}")
def get_list(ctx: ContextDep, backend: ListsDep, address: Address) -> MailingListPublic:
    return MailingListPublic.model_validate(lists.get_list(ctx, backend, address))


@router.patch("/lists/{address}")
def update_list(
    ctx: ContextDep, backend: ListsDep, address: Address, body: MailingListUpdate
) -> MailingListPublic:
    changes = lists.ListChanges(**body.model_dump())
    return MailingListPublic.model_validate(lists.update_list(ctx, backend, address, changes))


@router.delete("/lists/{address}", status_code=status.HTTP_204_NO_CONTENT)
def delete_list(ctx: ContextDep, backend: ListsDep, address: Address) -> Response:
    """Mailman deletes the list with its members and held messages; mail to its
    addresses bounces from then on."""
    lists.delete_list(ctx, backend, address)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- members -------------------------------------------------------------------------------
@router.get("/lists/{address}/members")
def list_members(
    ctx: ContextDep,
    backend: ListsDep,
    page: PageDep,
    address: Address,
    role: Annotated[Role | None, Query(max_length=64, description="Only this role.")] = None,
) -> Page[ListMemberPublic]:
    """Owners, moderators, then members, each sorted by e-mail."""
    result = lists.list_members(ctx, backend, address, page, role)
    return page_of(result, ListMemberPublic.model_validate)


@router.post("/lists/{address}/members", status_code=status.HTTP_201_CREATED)
def add_member(
    ctx: ContextDep, backend: ListsDep, address: Address, body: ListMemberCreate
) -> ListMemberPublic:
    """Added at once: no confirmation mail and no approval (an admin action)."""
    member = lists.add_member(
        ctx,
        backend,
        address,
        body.email,
        role=body.role,
        display_name=body.display_name,
        delivery=body.delivery,
    )
    return ListMemberPublic.model_validate(member)


@router.patch("/lists/{address}/members/{email}")
def update_member(
    ctx: ContextDep, backend: ListsDep, address: Address, email: Email, body: ListMemberUpdate
) -> ListMemberPublic:
    """Delivery on or off (role member)."""
    member = lists.set_member_delivery(ctx, backend, address, email, body.delivery)
    return ListMemberPublic.model_validate(member)


@router.delete("/lists/{address}/members/{email}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(
    ctx: ContextDep, backend: ListsDep, address: Address, email: Email, role: RoleQuery = "member"
) -> Response:
    lists.remove_member(ctx, backend, address, email, role)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- held messages -------------------------------------------------------------------------
@router.get("/lists/{address}/held")
def list_held(
    ctx: ContextDep, backend: ListsDep, page: PageDep, address: Address
) -> Page[HeldMessagePublic]:
    """Posts waiting for a moderator, oldest first."""
    return page_of(lists.list_held(ctx, backend, address, page), HeldMessagePublic.model_validate)


@router.post("/lists/{address}/held/{held_id}")
def moderate_held(
    ctx: ContextDep,
    backend: ListsDep,
    address: Address,
    held_id: RowId,
    body: HeldMessageModerate,
) -> HeldMessageModerated:
    """accept posts it to the list, discard drops it, reject drops it and tells the
    poster (with `reason`)."""
    lists.moderate_held(ctx, backend, address, held_id, body.action, reason=body.reason)
    return HeldMessageModerated(id=held_id, action=body.action)
