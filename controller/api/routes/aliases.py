"""/api/v1/aliases"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from controller.api.deps import ContextDep, DomainFilter, PageDep
from controller.api.schemas import AliasCreate, AliasPublic, AliasUpdate, Page, page_of
from controller.domain import aliases

router = APIRouter(prefix="/aliases", tags=["aliases"])


@router.get("")
def list_aliases(
    ctx: ContextDep,
    page: PageDep,
    domain: DomainFilter = None,
) -> Page[AliasPublic]:
    result = aliases.list_aliases(ctx, page, domain)
    return page_of(result, AliasPublic.model_validate)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_alias(ctx: ContextDep, body: AliasCreate) -> AliasPublic:
    return AliasPublic.model_validate(
        aliases.create_alias(ctx, body.address, body.destinations, body.active)
    )


@router.get("/{address}")
def get_alias(ctx: ContextDep, address: str) -> AliasPublic:
    return AliasPublic.model_validate(aliases.get_alias(ctx, address))


@router.patch("/{address}")
def update_alias(ctx: ContextDep, address: str, body: AliasUpdate) -> AliasPublic:
    changes = aliases.AliasChanges(destinations=body.destinations, active=body.active)
    return AliasPublic.model_validate(aliases.update_alias(ctx, address, changes))


@router.delete("/{address}", status_code=status.HTTP_204_NO_CONTENT)
def delete_alias(ctx: ContextDep, address: str) -> Response:
    aliases.delete_alias(ctx, address)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
