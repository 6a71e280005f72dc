"""/api/v1/domains/{name}/filter: a domain's content-filter policy (live for Amavis)."""

from __future__ import annotations

from fastapi import APIRouter

from controller.api.deps import ContextDep
from controller.api.schemas import FilterPolicyPublic, FilterPolicyReplace, FilterPolicyUpdate
from controller.domain import filter_policies

router = APIRouter(prefix="/domains", tags=["content filter"])


@router.get("/{name}/filter")
def get_filter_policy(ctx: ContextDep, name: str) -> FilterPolicyPublic:
    return FilterPolicyPublic.model_validate(filter_policies.get_filter_policy(ctx, name))


@router.put("/{name}/filter")
def replace_filter_policy(
    ctx: ContextDep, name: str, body: FilterPolicyReplace
) -> FilterPolicyPublic:
    values = filter_policies.FilterPolicyValues(**body.model_dump())
    return FilterPolicyPublic.model_validate(
        filter_policies.replace_filter_policy(ctx, name, values)
    )


@router.patch("/{name}/filter")
def update_filter_policy(
    ctx: ContextDep, name: str, body: FilterPolicyUpdate
) -> FilterPolicyPublic:
    # Fields absent from the body stay None: unchanged.
    changes = filter_policies.FilterPolicyChanges(**body.model_dump())
    return FilterPolicyPublic.model_validate(
        filter_policies.update_filter_policy(ctx, name, changes)
    )


@router.delete("/{name}/filter")
def reset_filter_policy(ctx: ContextDep, name: str) -> FilterPolicyPublic:
    """Back to the defaults; answers the (default) policy now in force."""
    return FilterPolicyPublic.model_validate(filter_policies.reset_filter_policy(ctx, name))
