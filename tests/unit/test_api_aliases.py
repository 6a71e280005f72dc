"""/api/v1/aliases through HTTP with an admin token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

API = "/api/v1"
ALIASES = f"{API}/aliases"

Problem = Callable[..., dict[str, Any]]
State = Callable[[], dict[str, list[tuple[Any, ...]]]]


@pytest.fixture(autouse=True)
def _domains(make: Any) -> None:
    make.domain("example.org")
    make.domain("other.org")


def test_create_alias(admin: TestClient) -> None:
    response = admin.post(
        ALIASES,
        json={
            "address": "Team@Example.ORG",
            "destinations": [
                "Alice@Example.org",
                "ext+News@Elsewhere.example",
                "alice@example.org",
                "bob@münchen.de",
            ],
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["address"] == "team@example.org"
    assert body["domain"] == "example.org"
    assert body["catch_all"] is False
    assert body["active"] is True
    # Normalised, duplicates dropped, order kept.
    assert body["destinations"] == [
        "alice@example.org",
        "ext+news@elsewhere.example",
        "bob@xn--mnchen-3ya.de",
    ]
    assert admin.get(f"{ALIASES}/team@example.org").json() == body


def test_catch_all_alias(admin: TestClient) -> None:
    response = admin.post(
        ALIASES, json={"address": "@Example.org", "destinations": ["alice@example.org"]}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["address"] == "@example.org"
    assert body["catch_all"] is True
    assert body["domain"] == "example.org"
    assert admin.get(f"{ALIASES}/@example.org").json() == body
    assert admin.get(ALIASES, params={"domain": "example.org"}).json()["items"] == [body]


def test_list_filter_and_pagination(
    make: Any,
    admin: TestClient,
) -> None:
    for address in ("c@example.org", "a@example.org", "@example.org", "z@other.org"):
        make.alias(address, ["dest@elsewhere.example"])
    everything = admin.get(ALIASES).json()
    assert everything["total"] == 4
    assert [a["address"] for a in everything["items"]] == [
        "@example.org",
        "a@example.org",
        "c@example.org",
        "z@other.org",
    ]
    page = admin.get(ALIASES, params={"domain": "example.org", "limit": 1, "offset": 1}).json()
    assert [a["address"] for a in page["items"]] == ["a@example.org"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)
    other = admin.get(ALIASES, params={"domain": "other.org"}).json()
    assert [a["address"] for a in other["items"]] == ["z@other.org"]


@pytest.mark.parametrize(
    "destination",
    ["team@example.org", "TEAM@Example.ORG", " team@example.org "],
)
def test_alias_to_itself_is_422(
    admin: TestClient, problem: Problem, db_state: State, destination: str
) -> None:
    before = db_state()
    body = {"address": "team@example.org", "destinations": ["alice@example.org", destination]}
    problem(admin.post(ALIASES, json=body), 422, detail_contains="loop")
    assert db_state() == before


def test_alias_cannot_take_a_mailbox_address(
    make: Any, admin: TestClient, problem: Problem, db_state: State
) -> None:
    make.mailbox("alice@example.org")
    before = db_state()
    body = {"address": "Alice@example.org", "destinations": ["bob@elsewhere.example"]}
    problem(admin.post(ALIASES, json=body), 409, detail_contains="mailbox")
    assert db_state() == before


def test_duplicate_alias_is_409(
    make: Any, admin: TestClient, problem: Problem, db_state: State
) -> None:
    make.alias("team@example.org", ["a@elsewhere.example"])
    make.alias("@example.org", ["a@elsewhere.example"])
    before = db_state()
    for address in ("team@example.org", "TEAM@example.org", "@EXAMPLE.org"):
        body = {"address": address, "destinations": ["b@elsewhere.example"]}
        problem(admin.post(ALIASES, json=body), 409, detail_contains="already exists")
    assert db_state() == before
    assert admin.get(f"{ALIASES}/team@example.org").json()["destinations"] == [
        "a@elsewhere.example"
    ]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"address": "team@unknown.example"}, id="unhosted-domain"),
        pytest.param({"address": "team+x@example.org"}, id="plus-in-alias"),
        pytest.param({"address": "te'am@example.org"}, id="quote-in-alias"),
        pytest.param({"address": "team@example.org\r\nDATA"}, id="crlf-in-alias"),
        pytest.param({"address": "team"}, id="no-domain"),
        pytest.param({"destinations": []}, id="no-destinations"),
        pytest.param({"destinations": ["x@elsewhere.example\r\nRCPT TO:<y@z>"]}, id="dest-crlf"),
        pytest.param({"destinations": ["x@elsewhere.example", "x\x00@y.example"]}, id="dest-nul"),
        pytest.param({"destinations": ["'x'@elsewhere.example"]}, id="dest-quote"),
        pytest.param({"destinations": ["x%y@elsewhere.example"]}, id="dest-percent"),
        pytest.param({"destinations": ["x@elsewhere.example,y@z.example"]}, id="dest-comma"),
        pytest.param({"destinations": ["@elsewhere.example"]}, id="dest-catch-all"),
        pytest.param({"destinations": ["nobody"]}, id="dest-no-domain"),
        pytest.param({"destinations": "x@elsewhere.example"}, id="dest-not-a-list"),
        pytest.param(
            {"destinations": [f"u{index}@elsewhere.example" for index in range(201)]},
            id="dest-201",
        ),
        pytest.param({"active": "yes"}, id="active-string"),
        pytest.param({"forward": True}, id="unknown-field"),
    ],
)
def test_bad_alias_is_422_and_writes_nothing(
    admin: TestClient, problem: Problem, db_state: State, body: dict[str, Any]
) -> None:
    before = db_state()
    request = {"address": "team@example.org", "destinations": ["x@elsewhere.example"], **body}
    problem(admin.post(ALIASES, json=request), 422)
    assert db_state() == before


def test_alias_with_200_destinations_is_accepted(admin: TestClient) -> None:
    destinations = [f"u{index}@elsewhere.example" for index in range(200)]
    response = admin.post(
        ALIASES, json={"address": "all@example.org", "destinations": destinations}
    )
    assert response.status_code == 201
    assert response.json()["destinations"] == destinations


def test_alias_in_alias_domain_is_422(admin: TestClient, problem: Problem, db_state: State) -> None:
    alias_domain = {"name": "alias.example", "target_domain": "example.org"}
    assert admin.post(f"{API}/alias-domains", json=alias_domain).status_code == 201
    before = db_state()
    body = {"address": "team@alias.example", "destinations": ["x@elsewhere.example"]}
    problem(admin.post(ALIASES, json=body), 422, detail_contains="example.org")
    assert db_state() == before


def test_patch_destinations_and_active(
    make: Any, admin: TestClient, count_rows: Callable[[str], int]
) -> None:
    make.alias("team@example.org", ["a@elsewhere.example", "b@elsewhere.example"])
    response = admin.patch(
        f"{ALIASES}/team@example.org",
        json={"destinations": ["c@elsewhere.example", "A@elsewhere.example"]},
    )
    assert response.status_code == 200
    assert response.json()["destinations"] == ["c@elsewhere.example", "a@elsewhere.example"]
    assert count_rows("alias_destinations") == 2
    response = admin.patch(f"{ALIASES}/team@example.org", json={"active": False})
    assert response.json()["active"] is False
    stored = admin.get(f"{ALIASES}/team@example.org").json()
    assert stored["destinations"] == ["c@elsewhere.example", "a@elsewhere.example"]
    assert stored["active"] is False


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"destinations": []}, id="empty"),
        pytest.param({"destinations": ["team@example.org"]}, id="itself"),
        pytest.param({"destinations": ["ok@elsewhere.example", "bad\n@x.example"]}, id="lf"),
        pytest.param({"destinations": "ok@elsewhere.example"}, id="not-a-list"),
        pytest.param({"address": "other@example.org"}, id="rename"),
    ],
)
def test_bad_patch_is_422_and_keeps_destinations(
    make: Any,
    admin: TestClient,
    problem: Problem,
    db_state: State,
    body: dict[str, Any],
) -> None:
    make.alias("team@example.org", ["a@elsewhere.example", "b@elsewhere.example"])
    before = db_state()
    problem(admin.patch(f"{ALIASES}/team@example.org", json=body), 422)
    assert db_state() == before
    assert admin.get(f"{ALIASES}/team@example.org").json()["destinations"] == [
        "a@elsewhere.example",
        "b@elsewhere.example",
    ]


def test_unknown_alias_is_404(admin: TestClient, problem: Problem) -> None:
    problem(admin.get(f"{ALIASES}/nobody@example.org"), 404, detail_contains="nobody")
    problem(admin.get(f"{ALIASES}/@example.org"), 404)
    problem(admin.patch(f"{ALIASES}/nobody@example.org", json={"active": False}), 404)
    problem(admin.delete(f"{ALIASES}/nobody@example.org"), 404)


def test_delete_alias_removes_its_destinations(
    make: Any, admin: TestClient, count_rows: Callable[[str], int]
) -> None:
    make.alias("team@example.org", ["a@elsewhere.example", "b@elsewhere.example"])
    make.alias("@example.org", ["a@elsewhere.example"])
    assert count_rows("alias_destinations") == 3
    assert admin.delete(f"{ALIASES}/team@example.org").status_code == 204
    assert admin.get(f"{ALIASES}/team@example.org").status_code == 404
    assert count_rows("alias_destinations") == 1
    assert admin.delete(f"{ALIASES}/@example.org").status_code == 204
    assert count_rows("aliases") == 0
    assert count_rows("alias_destinations") == 0


def test_deleted_alias_address_can_become_a_mailbox(
    make: Any,
    admin: TestClient,
) -> None:
    make.alias("team@example.org", ["a@elsewhere.example"])
    body = {"address": "team@example.org", "password": "correct horse battery"}
    assert admin.post(f"{API}/mailboxes", json=body).status_code == 409
    assert admin.delete(f"{ALIASES}/team@example.org").status_code == 204
    assert admin.post(f"{API}/mailboxes", json=body).status_code == 201
