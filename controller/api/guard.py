"""The API's front door: a body size limit, the token checked before any body is read,
and 429 for client addresses that keep presenting bad tokens.

FastAPI reads and parses a request's body before its dependencies run, so a token check
written as a dependency comes too late: anyone could make the controller read and
parse megabytes. This pure ASGI middleware sits in front of the application and
decides from the request line and headers alone:

1. A declared Content-Length over the limit: 413 at once.
2. Every path except the public ones (health check, API docs) needs a valid bearer
   token: 401 otherwise, 429 for a client over its failure limit (controller.api.
   throttle). The body has not been read at that point.
3. Then the body is read, counted while it streams (a chunked body has no declared
   length): 413 as soon as it passes the limit. The application gets the body only
   when it is complete and within the limit.

The principal is handed on in the request's scope state (`principal`), so the token
is looked up once; controller.api.deps reads it from there and fails closed without
it. Unread request bodies are discarded by the server (uvicorn reads and drops them
after the response), so refusing costs no memory.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.api.problems import problem
from controller.api.throttle import AuthFailureLimiter, client_key
from controller.domain.access import Principal
from controller.domain.tokens import TOKEN_PREFIX, authenticate
from controller.errors import Unauthenticated

log = logging.getLogger(__name__)

PRINCIPAL = "principal"  # key in the ASGI scope's state
# Served without a token: the container's health check and the API's own description.
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
NO_CREDENTIALS = (
    "send an API token as 'Authorization: Bearer <token>'; the first admin token is "
    "printed by `docker compose exec controller mailyard admin-token`"
)


class _TooLarge:
    """Marker: the streamed body passed the limit."""


class _Disconnected:
    """Marker: the client went away before its body was complete."""


def bearer_token(headers: Headers) -> str | None:
    """The token of exactly one `Authorization: Bearer <token>` header, else None."""
    values = headers.getlist("authorization")
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


class ApiGuard:
    """Pure ASGI middleware; see the module's docstring for the order of the checks."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        sessions: sessionmaker[Session],
        max_body_bytes: int,
        limiter: AuthFailureLimiter,
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.max_body_bytes = max_body_bytes
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._check_declared_length(headers)
        if refusal is None and scope["path"] not in PUBLIC_PATHS:
            outcome = await self._authenticate(scope, headers)
            if isinstance(outcome, Principal):
                state: dict[str, Any] = dict(scope.get("state") or {})
                state[PRINCIPAL] = outcome
                scope = {**scope, "state": state}
            else:
                refusal = outcome
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        body = await self._read_body(receive)
        if isinstance(body, _Disconnected):
            return
        if isinstance(body, _TooLarge):
            await self._too_large()(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    # --- size ------------------------------------------------------------------------------
    def _too_large(self) -> Response:
        return problem(
            413,
            "Content too large",
            f"the request body is larger than the {self.max_body_bytes} bytes this API "
            "accepts (MAILYARD_API_MAX_BODY_BYTES); send less per request",
        )

    def _check_declared_length(self, headers: Headers) -> Response | None:
        values = {value.strip() for value in headers.getlist("content-length")}
        if not values:
            return None
        declared = values.pop()
        if values or not declared.isascii() or not declared.isdigit():
            return problem(400, "Bad request", "the Content-Length header must be one whole number")
        return self._too_large() if int(declared) > self.max_body_bytes else None

    async def _read_body(self, receive: Receive) -> bytes | _TooLarge | _Disconnected:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _Disconnected()
            if message["type"] != "http.request":
                continue
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return _TooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # --- token -----------------------------------------------------------------------------
    async def _authenticate(self, scope: Scope, headers: Headers) -> Principal | Response:
        client = scope.get("client")
        host: str | None = client[0] if client else None
        key = client_key(host)
        wait = self.limiter.retry_after(key)
        token = bearer_token(headers)
        if token is not None and (wait is None or token.startswith(f"{TOKEN_PREFIX}_")):
            try:
                principal: Principal = await run_in_threadpool(self._principal, token, host)
            except Unauthenticated as exc:
                message = exc.text("api")
            except SQLAlchemyError:
                log.exception("authenticating an API request failed: database error")
                return problem(
                    503,
                    "Service unavailable",
                    "the controller cannot check the token: its database does not answer; "
                    "retry once `docker compose ps db` shows it healthy",
                )
            else:
                return principal
        else:
            # No token; or blocked, and not even shaped like a token: no database lookup.
            message = NO_CREDENTIALS
        if wait is not None:
            return self._too_many(host, wait)
        self.limiter.record_failure(key)
        return problem(401, "Unauthenticated", message)

    def _principal(self, token: str, host: str | None) -> Principal:
        with self.sessions() as session:
            return authenticate(session, token, host)

    def _too_many(self, host: str | None, wait: int) -> Response:
        minutes = max(1, round(self.limiter.window / 60))
        return problem(
            429,
            "Too many requests",
            f"more than {self.limiter.limit} failed authentications from "
            f"{host or 'this client'} within {minutes} minute(s); requests without a valid "
            f"token are refused for {wait} more second(s). Requests with a valid token "
            "are not limited: check the token you send",
            headers={"Retry-After": str(wait)},
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields the body read by the guard, then the server's."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
