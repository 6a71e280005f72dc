"""/api/v1/mailboxes"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from controller.api.deps import ContextDep, DomainFilter, PageDep
from controller.api.schemas import MailboxCreate, MailboxPublic, MailboxUpdate, Page, page_of
from controller.domain import mailboxes

router = APIRouter(prefix="/mailboxes", tags=["mailboxes"])


@router.get("")
def list_mailboxes(
    ctx: ContextDep,
    page: PageDep,
    domain: DomainFilter = None,
) -> Page[MailboxPublic]:
    result = mailboxes.list_mailboxes(ctx, page, domain)
    return page_of(result, MailboxPublic.model_validate)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_mailbox(ctx: ContextDep, body: MailboxCreate) -> MailboxPublic:
    mailbox = mailboxes.create_mailbox(
        ctx, body.address, body.password, body.quota_mb, active=body.active
    )
    return MailboxPublic.model_validate(mailbox)


@router.get("/{address}")
def get_mailbox(ctx: ContextDep, address: str) -> MailboxPublic:
    return MailboxPublic.model_validate(mailboxes.get_mailbox(ctx, address))


@router.patch("/{address}")
def update_mailbox(ctx: ContextDep, address: str, body: MailboxUpdate) -> MailboxPublic:
    changes = mailboxes.MailboxChanges(
        password=body.password, quota_mb=body.quota_mb, active=body.active
    )
    return MailboxPublic.model_validate(mailboxes.update_mailbox(ctx, address, changes))


@router.delete("/{address}", status_code=status.HTTP_204_NO_CONTENT)
def delete_mailbox(ctx: ContextDep, address: str) -> Response:
    mailboxes.delete_mailbox(ctx, address)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
