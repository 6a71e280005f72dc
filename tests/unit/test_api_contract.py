"""The API keeps the contract its OpenAPI schema states (issue 15, found by schemathesis):
no server error for numbers the database cannot hold, RFC 3339 timestamps with an offset.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from controller.domain.mail_settings import SETTING_NAMES

HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    "path",
    ["/api/v1/alias-domains", "/api/v1/config/applies", "/api/v1/domains", "/api/v1/tokens"],
)
def test_an_offset_beyond_what_the_database_holds_is_a_422(admin: TestClient, path: str) -> None:
    response = admin.get(path, params={"offset": HUGE})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("path", ["/api/v1/tokens/{}", "/api/v1/config/applies/{}"])
def test_an_id_beyond_what_the_database_holds_is_a_422(admin: TestClient, path: str) -> None:
    response = admin.get(path.format(HUGE))
    assert response.status_code == 422, response.text


def test_timestamps_carry_their_offset(admin: TestClient) -> None:
    created = admin.post("/api/v1/domains", json={"name": "example.org"})
    assert created.status_code == 201, created.text
    for field in ("created_at", "updated_at"):
        moment = datetime.fromisoformat(created.json()[field])
        assert moment.utcoffset() is not None, created.json()[field]
    tokens = admin.get("/api/v1/tokens").json()["items"]
    assert all(datetime.fromisoformat(t["created_at"]).utcoffset() is not None for t in tokens)


def test_a_method_not_allowed_names_the_allowed_ones(admin: TestClient) -> None:
    response = admin.put("/api/v1/domains")
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}


def test_every_status_a_route_answers_is_documented(admin: TestClient) -> None:
    schema = admin.get("/openapi.json").json()
    reconcile = schema["paths"]["/api/v1/config/reconcile"]["post"]["responses"]
    assert {"200", "204"} <= set(reconcile)


def test_the_stack_status_is_for_admin_tokens_only(
    client: TestClient, admin: TestClient, client_for: Callable[[str], TestClient]
) -> None:
    # The sentence names services and queue reasons: no token, no status; a domain
    # token manages its domains, not the stack.
    assert client.get("/api/v1/status").status_code == 401
    admin.post("/api/v1/domains", json={"name": "example.org"})
    scoped = admin.post("/api/v1/tokens", json={"name": "panel", "domains": ["example.org"]})
    assert client_for(scoped.json()["token"]).get("/api/v1/status").status_code == 403
    assert admin.get("/api/v1/status").json()["state"] == "unknown"  # no Docker here


def _response_schema(schema: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    content = schema["paths"][path][method]["responses"]["200"]["content"]
    body: dict[str, Any] = content["application/json"]["schema"]
    while "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    return body


def test_settings_plan_and_applies_are_typed_in_the_schema(admin: TestClient) -> None:
    schema = admin.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    view = _response_schema(schema, "/api/v1/settings", "get")
    assert set(view["required"]) == {"settings", "apply"}
    values = components["SettingsValues"]
    assert set(values["required"]) == set(SETTING_NAMES)
    assert values["properties"]["message_size_limit"]["type"] == "integer"
    plan = _response_schema(schema, "/api/v1/config/plan", "post")
    service = components["ServicePlan"]["properties"]
    assert set(plan["required"]) == {"changes", "services"}
    assert {"running_release", "desired_release", "changed", "replicas", "drift", "diff"} <= set(
        service
    )
    apply = _response_schema(schema, "/api/v1/config/applies/{apply_id}", "get")
    assert apply["properties"]["started_at"]["anyOf"][0]["format"] == "date-time"
    step = components["ReplicaStepPublic"]["properties"]
    assert {"container", "reload_ms", "gate_ms", "outcome", "message"} <= set(step)
    page = _response_schema(schema, "/api/v1/config/applies", "get")
    assert page["properties"]["items"]["items"]["$ref"].endswith("/ApplyPublic")
