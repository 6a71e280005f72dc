"""Errors as RFC 9457 problem details (application/problem+json).

Domain errors are rendered in the API's words (`MailyardError.text("api")`: a remedy is
named as a request, e.g. POST /api/v1/domains). A body that cannot be read as JSON (not
JSON, not UTF-8, another Content-Type, missing) is a 422 like every other unacceptable
input, with one sentence that says to send JSON with Content-Type: application/json;
FastAPI's own answers ("0: JSON decode error", 400 "There was an error parsing the
body", "Input should be a valid dictionary") never reach a client.
"""

from __future__ import annotations

from email.message import Message
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from controller.errors import (
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
        "A value is not acceptable, or the body is not JSON sent with Content-Type: "
        "application/json; `detail` says which and why. Nothing was written."
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


SEND_JSON = "send JSON with Content-Type: application/json"
# What FastAPI raises (400) when a JSON body cannot even be decoded, e.g. is not UTF-8.
_UNPARSABLE_BODY = "There was an error parsing the body"


def _not_json(reason: str) -> JSONResponse:
    return problem(
        422, "Invalid input", f"the request body is not valid JSON: {reason}; {SEND_JSON}"
    )


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _body_problem(request: Request, exc: RequestValidationError) -> JSONResponse | None:
    """The answer when the body as a whole could not be read as JSON, else None."""
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            reason = str(error.get("ctx", {}).get("error", "")) or "cannot be decoded"
            position = loc[1] if len(loc) > 1 else None
            where = f" at character {position}" if isinstance(position, int) else ""
            return _not_json(f"{reason[:1].lower()}{reason[1:]}{where}")
        if loc == ("body",) and error.get("type") == "missing":
            return problem(422, "Invalid input", f"the request needs a body: {SEND_JSON}")
    content_type = request.headers.get("content-type")
    body_errors = [e for e in exc.errors() if tuple(e.get("loc", ()))[:1] == ("body",)]
    if body_errors and not _is_json(content_type):
        # FastAPI reads a body as JSON only when it is declared so; otherwise it
        # validates the raw bytes and says "Input should be a valid dictionary".
        said = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        return problem(
            422,
            "Invalid input",
            f"the request body was sent with {said}, so it was not read as JSON; {SEND_JSON}",
        )
    return None


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
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        body_problem = _body_problem(request, exc)
        if body_problem is not None:
            return body_problem
        errors = [
            {"field": _location(error.get("loc", ())), "message": str(error.get("msg", ""))}
            for error in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        # One offending field is named at the top, as the domain layer's errors do (a
        # limit the schema states answers like the same limit checked in the domain).
        fields = {e["field"] for e in errors}
        extra: dict[str, Any] = {"field": errors[0]["field"]} if len(fields) == 1 else {}
        return problem(422, "Invalid input", detail, errors=errors, **extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
            cause = exc.__cause__
            if isinstance(cause, UnicodeDecodeError):
                return _not_json(
                    f"it is not UTF-8 text (byte 0x{cause.object[cause.start]:02x} at "
                    f"position {cause.start})"
                )
            return _not_json(type(cause).__name__ if cause else "it cannot be decoded")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # RFC 9110: Allow lists every method of the resource. Starlette names only
            # those of the first route that matched the path, and FastAPI makes one
            # route per method.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return problem(exc.status_code, str(exc.detail), str(exc.detail), headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    # Asked of the router method by method: FastAPI's included routers do not list
    # their routes' methods.
    allowed = []
    for method in ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed
