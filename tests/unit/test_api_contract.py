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
    assert response.status_code == 422, response.text[:300]
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("path", ["/api/v1/tokens/{}", "/api/v1/config/applies/{}"])
def test_an_id_beyond_what_the_database_holds_is_a_422(admin: TestClient, path: str) -> None:
    response = admin.get(path.format(HUGE))
    assert response.status_code == 422, response.text[:300]


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


# --- found by schemathesis against the live API (tests/stack/test_api_schema.py) ----------
def test_plan_refuses_a_number_for_replace(admin: TestClient) -> None:
    # The schema says boolean; 0 was read as false and the plan answered 200.
    response = admin.post("/api/v1/config/plan", json={"settings": {}, "replace": 0})
    assert response.status_code == 422, response.text[:300]
    assert response.json()["field"] == "replace"
    unknown = admin.post("/api/v1/config/plan", json={"setings": {"hostname": "x"}})
    assert unknown.status_code == 422, unknown.text


def test_only_post_is_allowed_on_the_dkim_rotate_path(admin: TestClient) -> None:
    # DELETE /dkim/rotate was routed as "delete the key with selector rotate", so the
    # 405 named DELETE, a method the schema does not give this path.
    admin.post("/api/v1/domains", json={"name": "example.org"})
    response = admin.put("/api/v1/domains/example.org/dkim/rotate")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert admin.delete("/api/v1/domains/example.org/dkim/rotate").status_code == 405
    keys = admin.get("/api/v1/domains/example.org/dkim").json()["keys"]
    selector = keys[0]["selector"]
    allowed = admin.put(f"/api/v1/domains/example.org/dkim/{selector}").headers["allow"]
    assert allowed == "DELETE"


def _parameter(schema: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    parameters = schema["paths"][path][method]["parameters"]
    found: dict[str, Any] = next(p for p in parameters if p["name"] == name)["schema"]
    return found


def test_the_schema_states_the_limits_the_domain_layer_checks(admin: TestClient) -> None:
    # A schema-valid request was refused with 422: a 300-character domain filter, a
    # 1000-character description, a 5-character password.
    schema = admin.get("/openapi.json").json()
    for path in ("/api/v1/aliases", "/api/v1/mailboxes", "/api/v1/quarantine"):
        domain = _parameter(schema, path, "get", "domain")
        assert domain["anyOf"][0]["maxLength"] == 253, path
    components = schema["components"]["schemas"]
    assert components["DomainCreate"]["properties"]["description"]["maxLength"] == 255
    assert components["DomainCreate"]["properties"]["name"]["maxLength"] == 253
    password = components["MailboxCreate"]["properties"]["password"]
    assert (password["minLength"], password["maxLength"]) == (8, 1024)
    assert components["AliasCreate"]["properties"]["address"]["maxLength"] == 254
    assert components["TokenCreate"]["properties"]["name"]["maxLength"] == 100
    response = admin.get("/api/v1/aliases", params={"domain": "a" * 254})
    assert response.status_code == 422
    assert response.json()["field"] == "domain"


def test_the_schema_names_the_values_a_choice_accepts(admin: TestClient, problem: Any) -> None:
    # spam_action "" or algorithm "000" were schema-valid and refused with 422; the
    # schema now lists the choices, and the domain layer still says why in its words.
    components = admin.get("/openapi.json").json()["components"]["schemas"]
    replace = components["FilterPolicyReplace"]["properties"]
    assert replace["spam_action"]["enum"] == ["quarantine", "reject", "deliver"]
    assert replace["virus_action"]["enum"] == ["quarantine", "reject"]
    assert "executables" in replace["banned_categories"]["items"]["enum"]
    algorithm = components["DkimRotate"]["properties"]["algorithm"]["anyOf"][0]
    assert algorithm["enum"] == ["rsa-2048", "rsa-3072", "rsa-4096", "ed25519"]
    assert components["MailingListCreate"]["properties"]["posting"]["enum"] == [
        "members",
        "anyone",
        "moderated",
    ]
    assert components["HeldMessageModerate"]["properties"]["action"]["enum"] == [
        "accept",
        "discard",
        "reject",
    ]
    admin.post("/api/v1/domains", json={"name": "example.org"})
    response = admin.patch("/api/v1/domains/example.org/filter", json={"spam_action": "drop"})
    problem(response, 422, detail_contains="is not one of")


def test_healthz_documents_its_503_and_its_answer(client: TestClient) -> None:
    # /healthz answered 503 (database unreachable) without the schema naming it, and
    # its answer had no schema at all.
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/healthz"]["get"]["responses"]
    assert {"200", "503"} <= set(responses)
    health = schema["components"]["schemas"]["Health"]
    assert set(health["properties"]) == {"status", "database", "mail"}
    assert client.get("/healthz").json() == {"status": "ok"}
