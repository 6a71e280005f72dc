"""/healthz: the controller answers and reaches its database, and whether mail flows.

The status code is about the controller only (its container's health check); `mail`
carries the latest check of the mail path (controller.engine.mail_status), so a held
queue is visible here too. Served without a token: it names no host, address or user.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from controller.api.deps import SessionDep
from controller.engine.mail_status import MailStatusWatch

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


class MailHealth(BaseModel):
    state: str = Field(description="flowing, held or unknown (GET /api/v1/status says more).")
    summary: str


class Health(BaseModel):
    status: str = Field(description="ok, or unhealthy (then with `database`).")
    database: str | None = Field(default=None, description="unreachable; absent when ok.")
    mail: MailHealth | None = Field(
        default=None, description="The latest check of the mail path; absent before the first."
    )


@router.get(
    "/healthz",
    response_model=Health,
    responses={
        200: {"model": Health, "description": "The controller answers and reaches its database."},
        503: {"model": Health, "description": "The controller does not reach its database."},
    },
)
def healthz(request: Request, session: SessionDep) -> JSONResponse:
    try:
        session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, reported as such
        # Served without a token: the reason (host names, driver messages) goes to the
        # log, never to the client. One line, not a traceback: this runs every 10 s.
        log.warning("health check: the database does not answer: %s", exc)
        return JSONResponse(
            {"status": "unhealthy", "database": "unreachable", **_mail(request)},
            status_code=503,
        )
    return JSONResponse({"status": "ok", **_mail(request)})


def _mail(request: Request) -> dict[str, Any]:
    watch: MailStatusWatch | None = getattr(request.app.state, "mail_status", None)
    latest = watch.latest if watch is not None else None
    if latest is None:
        return {}
    return {"mail": {"state": latest.state, "summary": latest.summary}}
