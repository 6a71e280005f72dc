"""/api/v1/domains through HTTP with an admin token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

API = "/api/v1"
DOMAINS = f"{API}/domains"

Problem = Callable[..., dict[str, Any]]
State = Callable[[], dict[str, list[tuple[Any, ...]]]]


def test_create_get_and_list_a_domain(admin: TestClient) -> None:
    response = admin.post(DOMAINS, json={"name": "Example.ORG", "description": "main"})
    assert response.status_code == 201
    created = response.json()
    assert created["name"] == "example.org"
    assert created["description"] == "main"
    assert created["active"] is True
    assert created["created_at"]
    assert admin.get(f"{DOMAINS}/example.org").json() == created
    # Any spelling of the name finds it.
    assert admin.get(f"{DOMAINS}/EXAMPLE.org").json()["name"] == "example.org"
    listing = admin.get(DOMAINS).json()
    assert listing["total"] == 1
    assert [item["name"] for item in listing["items"]] == ["example.org"]


def test_idna_domain_is_stored_as_a_labels(admin: TestClient) -> None:
    response = admin.post(DOMAINS, json={"name": "München.DE"})
    assert response.status_code == 201
    assert response.json()["name"] == "xn--mnchen-3ya.de"
    assert admin.get(f"{DOMAINS}/münchen.de").json()["name"] == "xn--mnchen-3ya.de"
    assert admin.get(f"{DOMAINS}/xn--mnchen-3ya.de").status_code == 200


def test_create_inactive_domain(admin: TestClient) -> None:
    response = admin.post(DOMAINS, json={"name": "example.org", "active": False})
    assert response.status_code == 201
    assert admin.get(f"{DOMAINS}/example.org").json()["active"] is False


def test_pagination(
    make: Any,
    admin: TestClient,
) -> None:
    names = [f"d{index}.example" for index in range(5)]
    for name in reversed(names):
        make.domain(name)
    first = admin.get(DOMAINS, params={"limit": 2}).json()
    assert first["total"] == 5
    assert first["limit"] == 2
    assert first["offset"] == 0
    assert [item["name"] for item in first["items"]] == names[:2]
    second = admin.get(DOMAINS, params={"limit": 2, "offset": 2}).json()
    assert [item["name"] for item in second["items"]] == names[2:4]
    assert second["offset"] == 2
    last = admin.get(DOMAINS, params={"limit": 2, "offset": 4}).json()
    assert [item["name"] for item in last["items"]] == names[4:]
    beyond = admin.get(DOMAINS, params={"offset": 50}).json()
    assert beyond["items"] == []
    assert beyond["total"] == 5
    assert len(admin.get(DOMAINS, params={"limit": 1000}).json()["items"]) == 5
    assert admin.get(DOMAINS).json()["limit"] == 100


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1001}, {"limit": -1}, {"offset": -1}, {"limit": "ten"}],
)
def test_pagination_out_of_range_is_422(
    admin: TestClient, problem: Problem, params: dict[str, Any]
) -> None:
    body = problem(admin.get(DOMAINS, params=params), 422)
    assert next(iter(params)) in body["detail"]


def test_duplicate_domain_is_409_in_any_spelling(
    make: Any, admin: TestClient, problem: Problem, db_state: State
) -> None:
    make.domain("münchen.de")
    before = db_state()
    problem(admin.post(DOMAINS, json={"name": "xn--mnchen-3ya.de"}), 409, detail_contains="already")
    problem(admin.post(DOMAINS, json={"name": "MÜNCHEN.de"}), 409)
    assert db_state() == before


def test_relay_or_alias_domain_name_cannot_become_hosted(
    make: Any, admin: TestClient, problem: Problem, db_state: State
) -> None:
    make.domain("example.org")
    relay = admin.post(f"{API}/relay-domains", json={"name": "relay.example"})
    assert relay.status_code == 201
    alias = admin.post(
        f"{API}/alias-domains", json={"name": "alias.example", "target_domain": "example.org"}
    )
    assert alias.status_code == 201
    before = db_state()
    problem(admin.post(DOMAINS, json={"name": "relay.example"}), 409, detail_contains="relay")
    problem(admin.post(DOMAINS, json={"name": "Alias.Example"}), 409, detail_contains="alias")
    assert db_state() == before


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a.com\r\nRCPT TO:<x@y>", id="crlf"),
        pytest.param("example.org\x00", id="nul"),
        pytest.param("bad_name.org", id="underscore"),
        pytest.param("localhost", id="single-label"),
        pytest.param("example.org.", id="trailing-dot"),
        pytest.param("example.123", id="numeric-tld"),
        pytest.param("", id="empty"),
        pytest.param("exa'mple.org", id="quote"),
        pytest.param("a" * 64 + ".org", id="label-64"),
        pytest.param("x" * 10_000, id="10000-chars"),
    ],
)
def test_invalid_domain_name_is_422_and_writes_nothing(
    admin: TestClient, problem: Problem, db_state: State, name: str
) -> None:
    before = db_state()
    problem(admin.post(DOMAINS, json={"name": name}), 422)
    assert db_state() == before
    assert admin.get(DOMAINS).json()["total"] == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "example.org", "colour": "red"}, id="unknown-field"),
        pytest.param({"name": 5}, id="name-number"),
        pytest.param({"name": ["example.org"]}, id="name-list"),
        pytest.param({"name": "example.org", "active": "yes"}, id="active-string"),
        pytest.param({"name": "example.org", "active": 1}, id="active-int"),
        pytest.param({"description": "no name"}, id="missing-name"),
        pytest.param({"name": "example.org", "description": "x\r\ny"}, id="description-crlf"),
        pytest.param({"name": "example.org", "description": "d" * 256}, id="description-256"),
        pytest.param([], id="not-an-object"),
    ],
)
def test_bad_create_request_is_422_and_writes_nothing(
    admin: TestClient, problem: Problem, db_state: State, body: Any
) -> None:
    before = db_state()
    problem(admin.post(DOMAINS, json=body), 422)
    assert db_state() == before


def test_malformed_json_is_422(admin: TestClient, problem: Problem, db_state: State) -> None:
    before = db_state()
    response = admin.post(
        DOMAINS, content=b'{"name": "example.org"', headers={"Content-Type": "application/json"}
    )
    problem(response, 422)
    assert db_state() == before


def test_422_detail_names_the_field(admin: TestClient, problem: Problem) -> None:
    body = problem(admin.post(DOMAINS, json={"name": "example.org", "colour": "red"}), 422)
    assert "colour" in body["detail"]
    body = problem(admin.post(DOMAINS, json={"name": "bad_name.org"}), 422)
    assert body["field"] == "name"
    assert "bad_name.org" in body["detail"]


def test_description_with_quotes_is_kept_verbatim(admin: TestClient) -> None:
    text = 'Ops\' "main" domain; 100% / `ok`'
    response = admin.post(DOMAINS, json={"name": "example.org", "description": text})
    assert response.status_code == 201
    assert admin.get(f"{DOMAINS}/example.org").json()["description"] == text


def test_unknown_domain_is_404(admin: TestClient, problem: Problem) -> None:
    problem(admin.get(f"{DOMAINS}/nowhere.example"), 404, detail_contains="nowhere.example")
    problem(admin.patch(f"{DOMAINS}/nowhere.example", json={"active": False}), 404)
    problem(admin.delete(f"{DOMAINS}/nowhere.example"), 404)
    problem(admin.get(f"{DOMAINS}/not_a_domain"), 404)


def test_patch_description_and_active(
    make: Any, admin: TestClient, flushed: list[list[str]]
) -> None:
    make.domain("example.org", description="old")
    response = admin.patch(f"{DOMAINS}/example.org", json={"description": "new"})
    assert response.status_code == 200
    assert response.json()["description"] == "new"
    assert response.json()["active"] is True
    response = admin.patch(f"{DOMAINS}/example.org", json={"active": False})
    assert response.json()["active"] is False
    stored = admin.get(f"{DOMAINS}/example.org").json()
    assert stored["description"] == "new"
    assert stored["active"] is False
    assert flushed == []  # no mailboxes, nothing to flush


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"active": "no"}, id="active-string"),
        pytest.param({"name": "other.org"}, id="rename-not-allowed"),
        pytest.param({"description": "a\nb"}, id="description-lf"),
        pytest.param({"description": "d" * 256}, id="description-256"),
    ],
)
def test_bad_patch_is_422_and_changes_nothing(
    make: Any,
    admin: TestClient,
    problem: Problem,
    db_state: State,
    body: dict[str, Any],
) -> None:
    make.domain("example.org", description="kept")
    before = db_state()
    problem(admin.patch(f"{DOMAINS}/example.org", json=body), 422)
    assert db_state() == before


def test_deactivating_a_domain_flushes_its_mailboxes(
    make: Any,
    admin: TestClient,
    flushed: list[list[str]],
) -> None:
    make.domain("example.org")
    make.domain("other.org")
    make.mailbox("alice@example.org")
    make.mailbox("bob@example.org")
    make.mailbox("carol@other.org")
    flushed.clear()
    admin.patch(f"{DOMAINS}/example.org", json={"description": "only text"})
    assert flushed == []
    assert admin.patch(f"{DOMAINS}/example.org", json={"active": False}).status_code == 200
    assert [sorted(call) for call in flushed] == [["alice@example.org", "bob@example.org"]]
    flushed.clear()
    admin.patch(f"{DOMAINS}/example.org", json={"active": False})
    assert flushed == []  # no change, nothing to flush
    admin.patch(f"{DOMAINS}/example.org", json={"active": True})
    assert [sorted(call) for call in flushed] == [["alice@example.org", "bob@example.org"]]


def test_delete_empty_domain(
    make: Any,
    admin: TestClient,
) -> None:
    make.domain("example.org")
    make.domain("other.org")
    response = admin.delete(f"{DOMAINS}/example.org")
    assert response.status_code == 204
    assert response.content == b""
    assert admin.get(f"{DOMAINS}/example.org").status_code == 404
    assert [d["name"] for d in admin.get(DOMAINS).json()["items"]] == ["other.org"]


@pytest.mark.parametrize("content", ["mailbox", "alias", "alias-domain"])
def test_delete_refused_while_domain_has_content(
    make: Any,
    admin: TestClient,
    problem: Problem,
    db_state: State,
    content: str,
) -> None:
    make.domain("example.org")
    if content == "mailbox":
        make.mailbox("alice@example.org")
    elif content == "alias":
        make.alias("team@example.org", ["someone@elsewhere.example"])
    else:
        response = admin.post(
            f"{API}/alias-domains",
            json={"name": "alias.example", "target_domain": "example.org"},
        )
        assert response.status_code == 201
    before = db_state()
    problem(admin.delete(f"{DOMAINS}/example.org"), 409, detail_contains="cascade=true")
    problem(admin.delete(f"{DOMAINS}/example.org", params={"cascade": "false"}), 409)
    assert db_state() == before
    assert admin.get(f"{DOMAINS}/example.org").status_code == 200


def test_cascade_delete_removes_everything_and_flushes(
    make: Any,
    admin: TestClient,
    flushed: list[list[str]],
    count_rows: Callable[[str], int],
) -> None:
    make.domain("example.org")
    make.domain("other.org")
    make.mailbox("alice@example.org")
    make.mailbox("bob@example.org")
    make.mailbox("carol@other.org")
    make.alias("team@example.org", ["alice@example.org", "carol@other.org"])
    make.alias("@example.org", ["alice@example.org"])
    make.alias("sales@other.org", ["carol@other.org"])
    alias_domain = {"name": "alias.example", "target_domain": "example.org"}
    assert admin.post(f"{API}/alias-domains", json=alias_domain).status_code == 201
    flushed.clear()

    assert admin.delete(f"{DOMAINS}/example.org", params={"cascade": "true"}).status_code == 204

    assert admin.get(f"{DOMAINS}/example.org").status_code == 404
    assert admin.get(f"{API}/mailboxes/alice@example.org").status_code == 404
    assert admin.get(f"{API}/aliases/team@example.org").status_code == 404
    assert admin.get(f"{API}/aliases/@example.org").status_code == 404
    assert admin.get(f"{API}/alias-domains/alias.example").status_code == 404
    assert [sorted(call) for call in flushed] == [["alice@example.org", "bob@example.org"]]
    # The other domain is untouched.
    assert [m["address"] for m in admin.get(f"{API}/mailboxes").json()["items"]] == [
        "carol@other.org"
    ]
    assert [a["address"] for a in admin.get(f"{API}/aliases").json()["items"]] == [
        "sales@other.org"
    ]
    assert count_rows("alias_destinations") == 1
    # The name is free again.
    assert admin.post(DOMAINS, json={"name": "example.org"}).status_code == 201
    assert admin.get(f"{API}/mailboxes", params={"domain": "example.org"}).json()["total"] == 0


def test_problem_response_shape(admin: TestClient, problem: Problem) -> None:
    body = problem(admin.get(f"{DOMAINS}/nowhere.example"), 404)
    assert body["type"] == "about:blank"
    assert body["title"] == "Not found"
    # Errors raised by the framework (unknown route, wrong method) are problems too.
    for response in (admin.get(f"{API}/no-such-endpoint"), admin.put(DOMAINS, json={})):
        assert response.status_code in {404, 405}
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == response.status_code
