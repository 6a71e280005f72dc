"""Request dependencies: database session, the authenticated caller, the use-case context."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from controller.api.guard import NO_CREDENTIALS, PRINCIPAL
from controller.domain.access import Context, Effects, Principal
from controller.domain.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRequest
from controller.domain.validation import MAX_DOMAIN_LENGTH
from controller.errors import Unauthenticated

_bearer = HTTPBearer(auto_error=False, description="A Mailyard API token: mailyard_<id>_<secret>")


def get_session(request: Request) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    with factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_principal(
    request: Request,
    # Declared for the OpenAPI schema (the docs' "Authorize" button) only: the token was
    # checked by controller.api.guard before the body was read.
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    state = request.scope.get("state") or {}
    principal = state.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        # Only the guard sets it; a route it does not cover fails closed.
        raise Unauthenticated(NO_CREDENTIALS)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_context(request: Request, session: SessionDep, principal: PrincipalDep) -> Context:
    effects: Effects = request.app.state.effects
    return effects.context(session, principal)


ContextDep = Annotated[Context, Depends(get_context)]


# The largest id or offset the database can hold (MariaDB's signed INT): a larger number
# in a query string or path is refused with 422, never passed to the database (where it
# overflowed into a 500).
MAX_ROW_NUMBER = 2**31 - 1

RowId = Annotated[int, Path(ge=0, le=MAX_ROW_NUMBER, description="The object's number.")]


def get_page(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_NUMBER, description="Items to skip.")] = 0,
) -> PageRequest:
    return PageRequest(limit=limit, offset=offset)


PageDep = Annotated[PageRequest, Depends(get_page)]

# A domain name to filter a list by: no longer than DNS allows (a longer one matches
# nothing and is refused as the schema says, not by the domain layer's 422).
DomainFilter = Annotated[
    str | None, Query(max_length=MAX_DOMAIN_LENGTH, description="Only this domain.")
]
