"""/api/v1/tokens through HTTP with an admin token."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

API = "/api/v1"
TOKENS = f"{API}/tokens"
TOKEN_FORMAT = re.compile(r"^mailyard_[0-9a-f]{16}_[A-Za-z0-9_-]{40,}$")

Problem = Callable[..., dict[str, Any]]
State = Callable[[], dict[str, list[tuple[Any, ...]]]]


def test_create_admin_token_and_use_it(
    admin: TestClient, client_for: Callable[[str], TestClient]
) -> None:
    response = admin.post(TOKENS, json={"name": "automation", "admin": True})
    assert response.status_code == 201
    body = response.json()
    assert TOKEN_FORMAT.match(body["token"])
    assert body["name"] == "automation"
    assert body["admin"] is True
    assert body["read_only"] is False
    assert body["domains"] == []
    assert body["last_used_at"] is None
    new = client_for(body["token"])
    assert new.post(f"{API}/domains", json={"name": "example.org"}).status_code == 201
    assert admin.get(f"{TOKENS}/{body['id']}").json()["last_used_at"] is not None


def test_create_scoped_token_normalises_domains(admin: TestClient, make: Any) -> None:
    make.domain("z.example")
    make.domain("münchen.de")
    response = admin.post(
        TOKENS,
        json={"name": "panel", "domains": ["Z.example", "München.DE", "z.example"]},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["admin"] is False
    assert body["domains"] == ["xn--mnchen-3ya.de", "z.example"]
    assert body["expires_at"] is None
    assert body["networks"] == []
    assert body["last_used_from"] is None


def test_scoped_token_for_a_domain_that_does_not_exist_is_422_naming_it(
    admin: TestClient, make: Any, problem: Problem, db_state: State
) -> None:
    make.domain("real.example")
    body = {"name": "alias-target.example", "target_domain": "real.example"}
    assert admin.post(f"{API}/alias-domains", json=body).status_code == 201
    before = db_state()
    response = admin.post(
        TOKENS, json={"name": "panel", "domains": ["real.example", "ghost.example"]}
    )
    detail = problem(response, 422, detail_contains="'ghost.example'")["detail"]
    assert "real.example'" not in detail.replace("'ghost.example'", "")
    assert "POST /api/v1/domains" in detail
    # An alias domain is named with its target, which is what a token can be bound to.
    response = admin.post(TOKENS, json={"name": "panel", "domains": ["alias-target.example"]})
    problem(response, 422, detail_contains="alias domain: name its target 'real.example'")
    assert db_state() == before


def test_each_token_is_different(admin: TestClient) -> None:
    first = admin.post(TOKENS, json={"name": "same", "admin": True}).json()
    second = admin.post(TOKENS, json={"name": "same", "admin": True}).json()
    assert first["token"] != second["token"]
    assert first["id"] != second["id"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "x", "admin": True, "domains": ["a.example"]}, id="admin+domains"),
        pytest.param({"name": "x"}, id="scoped-without-domains"),
        pytest.param({"name": "x", "domains": []}, id="empty-domains"),
        pytest.param({"name": "", "admin": True}, id="empty-name"),
        pytest.param({"name": "   ", "admin": True}, id="blank-name"),
        pytest.param({"name": "a\r\nb", "admin": True}, id="name-crlf"),
        pytest.param({"name": "n" * 101, "admin": True}, id="name-101"),
        pytest.param({"name": "x", "domains": ["bad_domain.org"]}, id="bad-domain"),
        pytest.param({"name": "x", "domains": ["a.example\n"]}, id="domain-lf"),
        pytest.param({"name": "x", "domains": "a.example"}, id="domains-string"),
        pytest.param({"name": "x", "admin": "true"}, id="admin-string"),
        pytest.param({"name": "x", "admin": True, "secret": "mine"}, id="unknown-field"),
        pytest.param({"admin": True}, id="missing-name"),
    ],
)
def test_bad_token_request_is_422_and_writes_nothing(
    admin: TestClient, problem: Problem, db_state: State, body: dict[str, Any]
) -> None:
    before = db_state()
    problem(admin.post(TOKENS, json=body), 422)
    assert db_state() == before


def test_list_and_get_never_show_the_secret(
    admin: TestClient, admin_secret: str, make: Any
) -> None:
    make.domain("a.example")
    created = admin.post(TOKENS, json={"name": "panel", "domains": ["a.example"]}).json()
    secret = created["token"]
    secret_part = secret.split("_", 2)[2]
    listing = admin.get(TOKENS)
    assert listing.status_code == 200
    assert listing.json()["total"] == 2
    assert [t["name"] for t in listing.json()["items"]] == ["first admin", "panel"]
    single = admin.get(f"{TOKENS}/{created['id']}")
    assert single.status_code == 200
    # Everything POST returned, except the secret itself.
    assert single.json() == {key: value for key, value in created.items() if key != "token"}
    for response in (listing, single):
        assert '"token"' not in response.text
        assert secret_part not in response.text
        assert admin_secret.split("_", 2)[2] not in response.text
        for item in response.json().get("items", [response.json()]):
            assert "token" not in item
            assert "secret_sha256" not in item


def test_token_list_pagination(admin: TestClient) -> None:
    for index in range(3):
        assert admin.post(TOKENS, json={"name": f"t{index}", "admin": True}).status_code == 201
    page = admin.get(TOKENS, params={"limit": 2, "offset": 1}).json()
    assert [t["name"] for t in page["items"]] == ["t0", "t1"]
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)
    assert admin.get(TOKENS, params={"limit": 0}).status_code == 422


def test_revoke_token(
    admin: TestClient, client_for: Callable[[str], TestClient], problem: Problem
) -> None:
    created = admin.post(TOKENS, json={"name": "short-lived", "admin": True}).json()
    other = client_for(created["token"])
    assert other.get(f"{API}/domains").status_code == 200
    assert admin.delete(f"{TOKENS}/{created['id']}").status_code == 204
    problem(other.get(f"{API}/domains"), 401)
    problem(admin.get(f"{TOKENS}/{created['id']}"), 404)
    problem(admin.delete(f"{TOKENS}/{created['id']}"), 404)
    assert [t["name"] for t in admin.get(TOKENS).json()["items"]] == ["first admin"]


def test_unknown_token_id(admin: TestClient, problem: Problem) -> None:
    problem(admin.get(f"{TOKENS}/999"), 404)
    problem(admin.delete(f"{TOKENS}/999"), 404)
    problem(admin.get(f"{TOKENS}/not-a-number"), 422)
