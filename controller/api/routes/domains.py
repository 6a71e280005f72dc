"""/api/v1/domains"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from controller.api.deps import ContextDep, PageDep
from controller.api.schemas import DomainCreate, DomainPublic, DomainUpdate, Page, page_of
from controller.domain import domains

router = APIRouter(prefix="/domains", tags=["domains"])


@router.get("")
def list_domains(ctx: ContextDep, page: PageDep) -> Page[DomainPublic]:
    result = domains.list_domains(ctx, page)
    return page_of(result, DomainPublic.model_validate)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_domain(ctx: ContextDep, body: DomainCreate) -> DomainPublic:
    """The domain gets an active DKIM key at once."""
    return DomainPublic.model_validate(
        domains.create_domain(ctx, body.name, body.description, body.active)
    )


@router.get("/{name}")
def get_domain(ctx: ContextDep, name: str) -> DomainPublic:
    return DomainPublic.model_validate(domains.get_domain(ctx, name))


@router.patch("/{name}")
def update_domain(ctx: ContextDep, name: str, body: DomainUpdate) -> DomainPublic:
    changes = domains.DomainChanges(description=body.description, active=body.active)
    return DomainPublic.model_validate(domains.update_domain(ctx, name, changes))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_domain(
    ctx: ContextDep,
    name: str,
    cascade: Annotated[
        bool, Query(description="Also delete the domain's mailboxes, aliases and alias domains.")
    ] = False,
) -> Response:
    """Refused (409) while the domain has mailboxes, aliases or alias domains (unless
    cascade=true) and always while it has mailing lists."""
    domains.delete_domain(ctx, name, cascade=cascade)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
