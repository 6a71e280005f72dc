"""/api/v1/tokens (admin only)"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from controller.api.deps import ContextDep, PageDep, RowId
from controller.api.schemas import Page, TokenCreate, TokenCreated, TokenPublic, page_of
from controller.domain import tokens

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.get("")
def list_tokens(ctx: ContextDep, page: PageDep) -> Page[TokenPublic]:
    result = tokens.list_tokens(ctx, page)
    return page_of(result, TokenPublic.model_validate)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_token(ctx: ContextDep, body: TokenCreate) -> TokenCreated:
    issued = tokens.create_token(
        ctx,
        body.name,
        is_admin=body.admin,
        read_only=body.read_only,
        domains=body.domains,
        expires_at=body.expires_at,
        expires_in_days=body.expires_in_days,
        networks=body.networks,
    )
    return TokenCreated(
        **TokenPublic.model_validate(issued.token).model_dump(), token=issued.secret
    )


@router.get("/{token_id}")
def get_token(ctx: ContextDep, token_id: RowId) -> TokenPublic:
    return TokenPublic.model_validate(tokens.get_token(ctx, token_id))


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(ctx: ContextDep, token_id: RowId) -> Response:
    tokens.revoke_token(ctx, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
