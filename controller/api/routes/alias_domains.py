"""/api/v1/alias-domains"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from controller.api.deps import ContextDep, PageDep
from controller.api.schemas import (
    AliasDomainCreate,
    AliasDomainPublic,
    AliasDomainUpdate,
    Page,
    page_of,
)
from controller.domain import alias_domains

router = APIRouter(prefix="/alias-domains", tags=["alias domains"])


@router.get("")
def list_alias_domains(ctx: ContextDep, page: PageDep) -> Page[AliasDomainPublic]:
    result = alias_domains.list_alias_domains(ctx, page)
    return page_of(result, AliasDomainPublic.model_validate)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_alias_domain(ctx: ContextDep, body: AliasDomainCreate) -> AliasDomainPublic:
    created = alias_domains.create_alias_domain(ctx, body.name, body.target_domain, body.active)
    return AliasDomainPublic.model_validate(created)


@router.get("/{name}")
def get_alias_domain(ctx: ContextDep, name: str) -> AliasDomainPublic:
    return AliasDomainPublic.model_validate(alias_domains.get_alias_domain(ctx, name))


@router.patch("/{name}")
def update_alias_domain(ctx: ContextDep, name: str, body: AliasDomainUpdate) -> AliasDomainPublic:
    return AliasDomainPublic.model_validate(
        alias_domains.update_alias_domain(ctx, name, body.active)
    )


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_alias_domain(ctx: ContextDep, name: str) -> Response:
    alias_domains.delete_alias_domain(ctx, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
