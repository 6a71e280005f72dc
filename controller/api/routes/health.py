"""/healthz: the controller answers and reaches its database."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from controller.api.deps import SessionDep

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz")
def healthz(session: SessionDep) -> JSONResponse:
    try:
        session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, reported as such
        # Served without a token: the reason (host names, driver messages) goes to the
        # log, never to the client. One line, not a traceback: this runs every 10 s.
        log.warning("health check: the database does not answer: %s", exc)
        return JSONResponse({"status": "unhealthy", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok"})
