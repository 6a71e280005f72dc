"""Errors as RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from controller.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    MailyardError,
    NotFound,
    Unauthenticated,
    Unavailable,
)

PROBLEM_JSON = "application/problem+json"

_STATUS: dict[type[MailyardError], tuple[int, str]] = {
    InvalidInput: (422, "Invalid input"),
    NotFound: (404, "Not found"),
    Conflict: (409, "Conflict"),
    Forbidden: (403, "Forbidden"),
    Unauthenticated: (401, "Unauthenticated"),
    Unavailable: (503, "Service unavailable"),
}


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this API is returned."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = None
    errors: list[FieldError] | None = None
    apply_id: int | None = None  # configuration changes: the recorded apply, if any


def _documented(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "model": Problem,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


# Declared on the API router so the OpenAPI schema shows the real error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _documented(
        "Missing, malformed, revoked, unknown or expired bearer token, or one used from "
        "outside its client networks."
    ),
    403: _documented("The token may not do this (read-only, not admin, other domain)."),
    404: _documented("No such object, or not visible to this token."),
    409: _documented("Clashes with existing data (duplicate, still in use)."),
    422: _documented(
        "A value is not acceptable; `detail` says which and why. Nothing was written."
    ),
    413: _documented("The request body is over MAILYARD_API_MAX_BODY_BYTES (default 1 MiB)."),
    429: _documented(
        "Too many failed authentications from this client address; see Retry-After. "
        "Requests with a valid token are not limited."
    ),
    503: _documented("A service the request needs is down; nothing was changed. Retry."),
}


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    body.update(extra)
    sent = dict(headers or {})
    if status == 401:
        sent["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=sent or None)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path")]
    return ".".join(parts) or "request"


def install(app: FastAPI) -> None:
    @app.exception_handler(MailyardError)
    async def _domain_error(_request: Request, exc: MailyardError) -> JSONResponse:
        status, title = next(
            (_STATUS[kind] for kind in type(exc).__mro__ if kind in _STATUS),
            (400, "Bad request"),
        )
        extra: dict[str, Any] = {"field": exc.field} if exc.field else {}
        extra.update(exc.extra)
        return problem(status, title, exc.text("api"), **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _location(error.get("loc", ())), "message": str(error.get("msg", ""))}
            for error in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "Invalid input", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))
