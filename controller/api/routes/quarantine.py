"""/api/v1/quarantine: messages Amavis quarantined (virus, spam, banned attachments)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from controller.api.deps import ContextDep, DomainFilter, PageDep
from controller.api.schemas import (
    Page,
    QuarantineEntryPublic,
    QuarantineRelease,
    QuarantineReleased,
    page_of,
)
from controller.domain import quarantine
from controller.services.amavis_pdp import AmavisPdpClient

router = APIRouter(prefix="/quarantine", tags=["quarantine"])


def get_amavis(request: Request) -> quarantine.Releaser:
    """The AM.PDP client for amavis:9998 (MAILYARD_AMAVIS_PDP_HOST, MAILYARD_AMAVIS_PDP_PORT)."""
    settings = request.app.state.config.settings
    return AmavisPdpClient(settings.amavis_pdp_host, settings.amavis_pdp_port)


AmavisDep = Annotated[quarantine.Releaser, Depends(get_amavis)]


@router.get("")
def list_quarantine(
    ctx: ContextDep,
    page: PageDep,
    domain: DomainFilter = None,
) -> Page[QuarantineEntryPublic]:
    result = quarantine.list_quarantine(ctx, page, domain)
    return page_of(result, QuarantineEntryPublic.model_validate)


@router.get("/{mail_id}")
def get_quarantined(ctx: ContextDep, mail_id: str) -> QuarantineEntryPublic:
    return QuarantineEntryPublic.model_validate(quarantine.get_quarantined(ctx, mail_id))


@router.post("/{mail_id}/release")
def release_quarantined(
    request: Request,
    ctx: ContextDep,
    amavis: AmavisDep,
    mail_id: str,
    body: QuarantineRelease | None = None,
) -> QuarantineReleased:
    recipient = body.recipient if body is not None else None
    # Address-shaped, as amavisd-release sends it; Amavis logs who asked.
    hostname = request.app.state.config.settings.hostname
    requested_by = f"mailyard-token-{ctx.principal.token_id or 0}@{hostname}"
    outcome = quarantine.release_quarantined(
        ctx, mail_id, amavis, recipient, requested_by=requested_by
    )
    return QuarantineReleased.model_validate(outcome)


@router.delete("/{mail_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_quarantined(ctx: ContextDep, mail_id: str) -> Response:
    quarantine.delete_quarantined(ctx, mail_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
