"""Port 80: ACME HTTP-01 challenges, and a redirect to HTTPS for everything else.

The redirect goes to the configured mail hostname, never to the request's Host header
(that would make this an open redirect).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from controller.services.acme_client import ChallengeStore


def responder_app(store: ChallengeStore, hostname: Callable[[], str]) -> Starlette:
    async def challenge(request: Request) -> Response:
        answer = store.get(str(request.path_params["token"]))
        if answer is None:
            return PlainTextResponse("no such challenge\n", status_code=404)
        return PlainTextResponse(answer)

    async def elsewhere(request: Request) -> Response:
        path = request.url.path if request.url.path.startswith("/") else "/"
        return RedirectResponse(f"https://{hostname()}{path}", status_code=301)

    return Starlette(
        routes=[
            Route("/.well-known/acme-challenge/{token}", challenge, methods=["GET", "HEAD"]),
            Route("/{rest:path}", elsewhere, methods=["GET", "HEAD", "POST", "PUT", "DELETE"]),
        ]
    )
