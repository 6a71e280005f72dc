"""/api/v1/settings and /api/v1/config: mail settings and the apply pipeline.

Admin tokens only. A write is applied before the response: validated by the daemons,
rolled out with health-gated reloads, recorded under /config/applies.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from controller.api.deps import PageDep, PrincipalDep, RowId
from controller.api.schemas import ApplyPublic, Page, PlanPublic, SettingsValues, page_of
from controller.api.schemas import Request as SchemaRequest
from controller.domain.access import Principal
from controller.domain.mail_settings import MailSettings, public_values
from controller.engine.apply import ConfigEngine

router = APIRouter(tags=["settings"])


def get_engine(request: Request) -> ConfigEngine:
    engine: ConfigEngine = request.app.state.config
    return engine


EngineDep = Annotated[ConfigEngine, Depends(get_engine)]


class SettingsView(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    settings: SettingsValues = Field(
        description="Every setting's effective value; secrets show '********' when set."
    )
    apply: ApplyPublic | None = Field(
        default=None, description="The apply this request made (null when nothing changed)."
    )


def _view(engine: ConfigEngine, record: dict[str, Any] | None = None) -> SettingsView:
    return SettingsView(
        settings=SettingsValues.model_validate(public_values(engine.current_settings())),
        apply=None if record is None else ApplyPublic.model_validate(record),
    )


class PlanRequest(SchemaRequest):
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Proposed changes (as for PATCH); empty shows drift."
    )
    replace: bool = Field(default=False, description="Treat `settings` as a PUT (full set).")


def _admin(principal: Principal, action: str, *, write: bool) -> None:
    principal.require_admin(action)
    if write:
        principal.require_write()


def _change(
    engine: ConfigEngine, principal: Principal, values: dict[str, Any], *, replace: bool
) -> SettingsView:
    _admin(principal, "change settings", write=True)
    record = engine.change_settings(
        values, replace=replace, actor=principal.name, token_id=principal.token_id
    )
    return _view(engine, record)


_SETTINGS_BODY = Body(
    description="Setting names and values (GET /api/v1/settings/schema describes them); "
    "null resets one to its default.",
    examples=[{"message_size_limit": 26214400}],
)


@router.get("/settings")
def get_settings(engine: EngineDep, principal: PrincipalDep) -> SettingsView:
    _admin(principal, "read settings", write=False)
    return _view(engine)


@router.get("/settings/schema")
def get_settings_schema(principal: PrincipalDep) -> dict[str, Any]:
    """JSON Schema of the settings: type, default, limits and description of each."""
    _admin(principal, "read settings", write=False)
    return MailSettings.model_json_schema()


@router.patch("/settings")
def patch_settings(
    engine: EngineDep,
    principal: PrincipalDep,
    values: Annotated[dict[str, Any], _SETTINGS_BODY],
) -> SettingsView:
    """Change the settings named in the body; the others keep their values."""
    return _change(engine, principal, values, replace=False)


@router.put("/settings")
def put_settings(
    engine: EngineDep,
    principal: PrincipalDep,
    values: Annotated[dict[str, Any], _SETTINGS_BODY],
) -> SettingsView:
    """Replace the whole set: settings absent from the body return to their defaults,
    except write-only secrets, which are kept unless given."""
    return _change(engine, principal, values, replace=True)


@router.post("/config/plan")
def plan(engine: EngineDep, principal: PrincipalDep, body: PlanRequest | None = None) -> PlanPublic:
    """Per service, the unified diff between the running release and what would run
    (with the proposed settings, if any). Changes nothing."""
    _admin(principal, "plan configuration changes", write=False)
    request = body or PlanRequest()
    return PlanPublic.model_validate(engine.plan(request.settings, replace=request.replace))


@router.post(
    "/config/reconcile",
    response_model=ApplyPublic,
    responses={
        200: {"description": "The apply that brought the containers to the desired release."},
        204: {"description": "Every container already ran the desired release."},
    },
)
def reconcile(engine: EngineDep, principal: PrincipalDep) -> ApplyPublic | Response:
    """Bring every container to the desired release now (the controller also does this
    periodically). 204 when everything already ran it."""
    _admin(principal, "reconcile the configuration", write=True)
    record = engine.reconcile(trigger="api")
    if record is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return ApplyPublic.model_validate(record)


@router.get("/config/applies")
def list_applies(
    engine: EngineDep,
    principal: PrincipalDep,
    page: PageDep,
    status_filter: Annotated[
        str | None, Query(alias="status", description="Only applies with this status.")
    ] = None,
) -> Page[ApplyPublic]:
    """Every apply, newest first: when, by whom, what changed, outcome, duration."""
    _admin(principal, "read applies", write=False)
    return page_of(engine.list_applies(page, status_filter), ApplyPublic.model_validate)


@router.get("/config/applies/{apply_id}")
def get_apply(engine: EngineDep, principal: PrincipalDep, apply_id: RowId) -> ApplyPublic:
    _admin(principal, "read applies", write=False)
    return ApplyPublic.model_validate(engine.get_apply(apply_id))
