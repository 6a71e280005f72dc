"""/api/v1/status: whether mail flows, and if it is held, why and what to do."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from controller.api.deps import PrincipalDep
from controller.engine.mail_status import MailStatusWatch

router = APIRouter(tags=["status"])


class ServiceStatePublic(BaseModel):
    service: str
    replicas: int = Field(description="Containers of the service.")
    healthy: int = Field(description="Of those, how many pass their health check.")
    detail: str = Field(description="What the check of one that does not pass last said.")


class QueueStatePublic(BaseModel):
    messages: int = Field(description="Messages in Postfix's queue, on every replica.")
    deferred: int = Field(description="Of those, how many wait for a retry.")
    top_reason: str = Field(description="The reason Postfix gave most often for waiting.")


class MailStatusPublic(BaseModel):
    state: str = Field(description="flowing, held (a part mail needs is down) or unknown.")
    summary: str = Field(description="One sentence: what is held, why, and the choices.")
    problems: list[str] = Field(description="One sentence for each part that is down.")
    services: list[ServiceStatePublic]
    queue: QueueStatePublic | None = Field(description="None when Postfix does not answer.")
    checked_at: str = Field(description="When this was read (UTC, ISO 8601).")


@router.get("/status")
def mail_status(request: Request, principal: PrincipalDep) -> MailStatusPublic:
    """Whether mail flows (admin tokens only), read now: the health of Postfix, Amavis,
    ClamAV, OpenDKIM, Dovecot and MariaDB, and Postfix's queue. When mail is held (for
    example ClamAV without virus signatures), `summary` says what is held, why, and what
    the administrator can do. `mailyard status` prints the same."""
    principal.require_admin("read the status of the whole stack")
    watch: MailStatusWatch = request.app.state.mail_status
    return MailStatusPublic.model_validate(watch.run_once().view())
