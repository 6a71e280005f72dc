"""/api/v1/relay-domains"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from controller.api.deps import ContextDep, PageDep
from controller.api.schemas import (
    Page,
    RelayDomainCreate,
    RelayDomainPublic,
    RelayDomainUpdate,
    page_of,
)
from controller.domain import relay_domains

router = APIRouter(prefix="/relay-domains", tags=["relay domains"])


@router.get("")
def list_relay_domains(ctx: ContextDep, page: PageDep) -> Page[RelayDomainPublic]:
    result = relay_domains.list_relay_domains(ctx, page)
    return page_of(result, RelayDomainPublic.model_validate)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_relay_domain(ctx: ContextDep, body: RelayDomainCreate) -> RelayDomainPublic:
    created = relay_domains.create_relay_domain(ctx, body.name, body.nexthop, body.active)
    return RelayDomainPublic.model_validate(created)


@router.get("/{name}")
def get_relay_domain(ctx: ContextDep, name: str) -> RelayDomainPublic:
    return RelayDomainPublic.model_validate(relay_domains.get_relay_domain(ctx, name))


@router.patch("/{name}")
def update_relay_domain(ctx: ContextDep, name: str, body: RelayDomainUpdate) -> RelayDomainPublic:
    if "nexthop" in body.model_fields_set:
        updated = relay_domains.update_relay_domain(
            ctx, name, nexthop=body.nexthop, active=body.active
        )
    else:
        updated = relay_domains.update_relay_domain(ctx, name, active=body.active)
    return RelayDomainPublic.model_validate(updated)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_relay_domain(ctx: ContextDep, name: str) -> Response:
    relay_domains.delete_relay_domain(ctx, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
