"""/api/v1/alias-domains and /api/v1/relay-domains through HTTP with an admin token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

API = "/api/v1"
ALIAS_DOMAINS = f"{API}/alias-domains"
RELAY_DOMAINS = f"{API}/relay-domains"

Problem = Callable[..., dict[str, Any]]
State = Callable[[], dict[str, list[tuple[Any, ...]]]]


@pytest.fixture(autouse=True)
def _domains(make: Any) -> None:
    make.domain("example.org")
    make.domain("other.org")


# --- alias domains -------------------------------------------------------------------------
def test_create_get_list_alias_domain(admin: TestClient) -> None:
    response = admin.post(
        ALIAS_DOMAINS, json={"name": "Alias.München.de", "target_domain": "EXAMPLE.org"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "alias.xn--mnchen-3ya.de"
    assert body["target_domain"] == "example.org"
    assert body["active"] is True
    assert admin.get(f"{ALIAS_DOMAINS}/alias.münchen.de").json() == body
    listing = admin.get(ALIAS_DOMAINS).json()
    assert listing["total"] == 1
    assert listing["items"] == [body]


def test_alias_domain_pagination(admin: TestClient) -> None:
    for index in range(3):
        body = {"name": f"a{index}.example", "target_domain": "example.org"}
        assert admin.post(ALIAS_DOMAINS, json=body).status_code == 201
    page = admin.get(ALIAS_DOMAINS, params={"limit": 2, "offset": 2}).json()
    assert [item["name"] for item in page["items"]] == ["a2.example"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 2)


def test_alias_domain_with_unknown_target_is_422(
    admin: TestClient, problem: Problem, db_state: State
) -> None:
    before = db_state()
    body = {"name": "alias.example", "target_domain": "unknown.example"}
    response = admin.post(ALIAS_DOMAINS, json=body)
    assert problem(response, 422, detail_contains="unknown.example")["field"] == "target_domain"
    assert db_state() == before


def test_alias_domain_cannot_target_an_alias_or_relay_domain(
    admin: TestClient, problem: Problem, db_state: State
) -> None:
    assert (
        admin.post(ALIAS_DOMAINS, json={"name": "a.example", "target_domain": "example.org"})
    ).status_code == 201
    assert admin.post(RELAY_DOMAINS, json={"name": "relay.example"}).status_code == 201
    before = db_state()
    for target in ("a.example", "relay.example"):
        body = {"name": "b.example", "target_domain": target}
        problem(admin.post(ALIAS_DOMAINS, json=body), 422)
    assert db_state() == before


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("example.org", id="hosted"),
        pytest.param("Other.ORG", id="other-hosted"),
        pytest.param("relay.example", id="relay"),
        pytest.param("taken.example", id="alias"),
    ],
)
def test_alias_domain_name_must_be_free(
    admin: TestClient, problem: Problem, db_state: State, name: str
) -> None:
    assert admin.post(RELAY_DOMAINS, json={"name": "relay.example"}).status_code == 201
    body = {"name": "taken.example", "target_domain": "other.org"}
    assert admin.post(ALIAS_DOMAINS, json=body).status_code == 201
    before = db_state()
    problem(admin.post(ALIAS_DOMAINS, json={"name": name, "target_domain": "example.org"}), 409)
    assert db_state() == before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "a.example\r\nx"}, id="crlf"),
        pytest.param({"name": "a_b.example"}, id="underscore"),
        pytest.param({"name": "a.example."}, id="trailing-dot"),
        pytest.param({"target_domain": "bad_target.org"}, id="bad-target"),
        pytest.param({"target_domain": 1}, id="target-number"),
        pytest.param({"active": "yes"}, id="active-string"),
        pytest.param({"target": "example.org"}, id="unknown-field"),
    ],
)
def test_bad_alias_domain_is_422_and_writes_nothing(
    admin: TestClient, problem: Problem, db_state: State, body: dict[str, Any]
) -> None:
    before = db_state()
    request = {"name": "alias.example", "target_domain": "example.org", **body}
    problem(admin.post(ALIAS_DOMAINS, json=request), 422)
    assert db_state() == before


def test_patch_and_delete_alias_domain(admin: TestClient, problem: Problem) -> None:
    body = {"name": "alias.example", "target_domain": "example.org"}
    assert admin.post(ALIAS_DOMAINS, json=body).status_code == 201
    response = admin.patch(f"{ALIAS_DOMAINS}/alias.example", json={"active": False})
    assert response.status_code == 200
    assert response.json()["active"] is False
    assert admin.get(f"{ALIAS_DOMAINS}/alias.example").json()["active"] is False
    problem(admin.patch(f"{ALIAS_DOMAINS}/alias.example", json={"active": "no"}), 422)
    problem(admin.patch(f"{ALIAS_DOMAINS}/alias.example", json={"target_domain": "other.org"}), 422)
    assert admin.get(f"{ALIAS_DOMAINS}/alias.example").json()["target_domain"] == "example.org"
    assert admin.delete(f"{ALIAS_DOMAINS}/alias.example").status_code == 204
    problem(admin.get(f"{ALIAS_DOMAINS}/alias.example"), 404)
    # The target domain is untouched and, now empty, can be deleted.
    assert admin.delete(f"{API}/domains/example.org").status_code == 204


def test_unknown_alias_domain_is_404(admin: TestClient, problem: Problem) -> None:
    problem(admin.get(f"{ALIAS_DOMAINS}/nowhere.example"), 404, detail_contains="nowhere")
    problem(admin.patch(f"{ALIAS_DOMAINS}/nowhere.example", json={"active": False}), 404)
    problem(admin.delete(f"{ALIAS_DOMAINS}/nowhere.example"), 404)
    # A hosted domain is not an alias domain.
    problem(admin.get(f"{ALIAS_DOMAINS}/example.org"), 404)


# --- relay domains -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("[MX.Example.net]:25", "[mx.example.net]:25"),
        ("mx.example.net:2525", "mx.example.net:2525"),
        ("[192.0.2.1]:25", "[192.0.2.1]:25"),
        ("mx.example.net", "mx.example.net"),
        (None, None),
        ("", None),
    ],
)
def test_create_relay_domain_normalises_nexthop(
    admin: TestClient, given: str | None, stored: str | None
) -> None:
    response = admin.post(RELAY_DOMAINS, json={"name": "Relay.Example", "nexthop": given})
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "relay.example"
    assert body["nexthop"] == stored
    assert body["active"] is True
    assert admin.get(f"{RELAY_DOMAINS}/relay.example").json() == body


def test_relay_domain_list_and_pagination(admin: TestClient) -> None:
    for name in ("r3.example", "r1.example", "r2.example"):
        assert admin.post(RELAY_DOMAINS, json={"name": name}).status_code == 201
    listing = admin.get(RELAY_DOMAINS, params={"limit": 2}).json()
    assert [item["name"] for item in listing["items"]] == ["r1.example", "r2.example"]
    assert listing["total"] == 3
    problem_response = admin.get(RELAY_DOMAINS, params={"limit": 5000})
    assert problem_response.status_code == 422


@pytest.mark.parametrize(
    "nexthop",
    [
        pytest.param("192.0.2.1", id="bare-ip"),
        pytest.param("mx.example.net:0", id="port-0"),
        pytest.param("mx.example.net:70000", id="port-70000"),
        pytest.param("[mx.example.net", id="unclosed"),
        pytest.param("[2001:db8::1]:25", id="ipv6"),
        pytest.param("mx.example.net\nmynetworks = 0.0.0.0/0", id="newline"),
        pytest.param(25, id="number"),
        # int() cannot parse this Unicode digit although str.isdigit() accepts it.
        pytest.param("mx.example.net:²", id="superscript-port"),
    ],
)
def test_invalid_nexthop_is_422_and_writes_nothing(
    admin: TestClient, problem: Problem, db_state: State, nexthop: Any
) -> None:
    before = db_state()
    problem(admin.post(RELAY_DOMAINS, json={"name": "relay.example", "nexthop": nexthop}), 422)
    assert db_state() == before


@pytest.mark.parametrize("name", ["example.org", "alias.example", "relay.example"])
def test_relay_domain_name_must_be_free(
    admin: TestClient, problem: Problem, db_state: State, name: str
) -> None:
    body = {"name": "alias.example", "target_domain": "example.org"}
    assert admin.post(ALIAS_DOMAINS, json=body).status_code == 201
    assert admin.post(RELAY_DOMAINS, json={"name": "relay.example"}).status_code == 201
    before = db_state()
    problem(admin.post(RELAY_DOMAINS, json={"name": name.upper()}), 409)
    assert db_state() == before


def test_relay_domain_name_cannot_become_hosted_or_alias_domain(
    admin: TestClient, problem: Problem, db_state: State
) -> None:
    assert admin.post(RELAY_DOMAINS, json={"name": "relay.example"}).status_code == 201
    before = db_state()
    problem(admin.post(f"{API}/domains", json={"name": "relay.example"}), 409)
    body = {"name": "relay.example", "target_domain": "example.org"}
    problem(admin.post(ALIAS_DOMAINS, json=body), 409, detail_contains="relay")
    assert db_state() == before


def test_patch_relay_domain_nexthop(admin: TestClient) -> None:
    body = {"name": "relay.example", "nexthop": "[mx1.example.net]:25"}
    assert admin.post(RELAY_DOMAINS, json=body).status_code == 201
    url = f"{RELAY_DOMAINS}/relay.example"
    # Changing only `active` keeps the next hop.
    response = admin.patch(url, json={"active": False})
    assert response.status_code == 200
    assert response.json()["nexthop"] == "[mx1.example.net]:25"
    assert admin.get(url).json()["nexthop"] == "[mx1.example.net]:25"
    assert admin.get(url).json()["active"] is False
    # A new next hop is normalised.
    response = admin.patch(url, json={"nexthop": "MX2.example.net:2525"})
    assert response.json()["nexthop"] == "mx2.example.net:2525"
    # null clears it: back to MX delivery.
    response = admin.patch(url, json={"nexthop": None})
    assert response.status_code == 200
    assert response.json()["nexthop"] is None
    assert admin.get(url).json()["nexthop"] is None
    assert admin.get(url).json()["active"] is False


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"nexthop": "192.0.2.1"}, id="bare-ip"),
        pytest.param({"nexthop": "mx.example.net\r\n"}, id="crlf"),
        pytest.param({"active": "false"}, id="active-string"),
        pytest.param({"name": "renamed.example"}, id="rename"),
    ],
)
def test_bad_relay_patch_is_422_and_changes_nothing(
    admin: TestClient, problem: Problem, db_state: State, body: dict[str, Any]
) -> None:
    request = {"name": "relay.example", "nexthop": "[mx1.example.net]:25"}
    assert admin.post(RELAY_DOMAINS, json=request).status_code == 201
    before = db_state()
    problem(admin.patch(f"{RELAY_DOMAINS}/relay.example", json=body), 422)
    assert db_state() == before


def test_delete_relay_domain(admin: TestClient, problem: Problem) -> None:
    assert admin.post(RELAY_DOMAINS, json={"name": "relay.example"}).status_code == 201
    assert admin.delete(f"{RELAY_DOMAINS}/relay.example").status_code == 204
    problem(admin.get(f"{RELAY_DOMAINS}/relay.example"), 404)
    problem(admin.delete(f"{RELAY_DOMAINS}/relay.example"), 404)
    problem(admin.patch(f"{RELAY_DOMAINS}/relay.example", json={"active": True}), 404)
    # The name is free for another class now.
    assert admin.post(f"{API}/domains", json={"name": "relay.example"}).status_code == 201
