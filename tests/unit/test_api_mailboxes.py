"""/api/v1/mailboxes through HTTP with an admin token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from controller.db.models import Mailbox
from controller.domain.passwords import verify_password

API = "/api/v1"
MAILBOXES = f"{API}/mailboxes"
PASSWORD = "correct horse battery"

Problem = Callable[..., dict[str, Any]]
State = Callable[[], dict[str, list[tuple[Any, ...]]]]
Stored = Callable[[str], Mailbox | None]


@pytest.fixture(autouse=True)
def _domains(make: Any) -> None:
    make.domain("example.org")
    make.domain("other.org")


def test_create_mailbox(
    admin: TestClient, stored_mailbox: Stored, flushed: list[list[str]]
) -> None:
    response = admin.post(
        MAILBOXES, json={"address": "Alice@Example.ORG", "password": PASSWORD, "quota_mb": 2048}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["address"] == "alice@example.org"
    assert body["domain"] == "example.org"
    assert body["quota_mb"] == 2048
    assert body["active"] is True
    # No secret material in the answer.
    assert "password" not in body
    assert "password_hash" not in body
    assert "ARGON2ID" not in response.text
    assert admin.get(f"{MAILBOXES}/alice@example.org").json() == body
    # The stored hash is one Dovecot verifies; the password itself is not stored.
    row = stored_mailbox("alice@example.org")
    assert row is not None
    assert row.password_hash.startswith("{ARGON2ID}$argon2id$")
    assert verify_password(row.password_hash, PASSWORD)
    assert PASSWORD not in row.password_hash
    assert row.maildir.startswith("example.org/alice.")
    # Dovecot may have cached a failed login for the new address.
    assert flushed == [["alice@example.org"]]


def test_defaults(admin: TestClient) -> None:
    body = admin.post(MAILBOXES, json={"address": "bob@example.org", "password": PASSWORD}).json()
    assert body["quota_mb"] == 1024
    assert body["active"] is True
    body = admin.post(
        MAILBOXES,
        json={"address": "off@example.org", "password": PASSWORD, "quota_mb": 0, "active": False},
    ).json()
    assert body["quota_mb"] == 0
    assert body["active"] is False


def test_mailbox_in_idna_domain(
    make: Any,
    admin: TestClient,
) -> None:
    make.domain("münchen.de")
    response = admin.post(MAILBOXES, json={"address": "hans@MÜNCHEN.de", "password": PASSWORD})
    assert response.status_code == 201
    assert response.json()["address"] == "hans@xn--mnchen-3ya.de"
    assert admin.get(f"{MAILBOXES}/hans@münchen.de").status_code == 200


def test_list_filter_and_pagination(
    make: Any,
    admin: TestClient,
) -> None:
    for address in ("c@example.org", "a@example.org", "b@example.org", "z@other.org"):
        make.mailbox(address)
    everything = admin.get(MAILBOXES).json()
    assert [m["address"] for m in everything["items"]] == [
        "a@example.org",
        "b@example.org",
        "c@example.org",
        "z@other.org",
    ]
    assert everything["total"] == 4
    only = admin.get(MAILBOXES, params={"domain": "Example.org"}).json()
    assert only["total"] == 3
    assert {m["domain"] for m in only["items"]} == {"example.org"}
    page = admin.get(MAILBOXES, params={"domain": "example.org", "limit": 2, "offset": 1}).json()
    assert [m["address"] for m in page["items"]] == ["b@example.org", "c@example.org"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)


def test_list_bad_parameters_are_422(admin: TestClient, problem: Problem) -> None:
    problem(admin.get(MAILBOXES, params={"limit": 1001}), 422)
    problem(admin.get(MAILBOXES, params={"limit": 0}), 422)
    problem(admin.get(MAILBOXES, params={"domain": "bad_domain.org"}), 422)


def test_unknown_mailbox_is_404(admin: TestClient, problem: Problem) -> None:
    problem(admin.get(f"{MAILBOXES}/nobody@example.org"), 404, detail_contains="nobody")
    problem(admin.patch(f"{MAILBOXES}/nobody@example.org", json={"active": False}), 404)
    problem(admin.delete(f"{MAILBOXES}/nobody@example.org"), 404)
    problem(admin.get(f"{MAILBOXES}/not-an-address"), 404)


def test_duplicate_mailbox_is_409(
    make: Any, admin: TestClient, problem: Problem, db_state: State
) -> None:
    make.mailbox("alice@example.org")
    before = db_state()
    for address in ("alice@example.org", "ALICE@example.ORG"):
        body = {"address": address, "password": PASSWORD}
        problem(admin.post(MAILBOXES, json=body), 409, detail_contains="already exists")
    assert db_state() == before


def test_mailbox_cannot_take_an_alias_address(
    make: Any,
    admin: TestClient,
    problem: Problem,
    db_state: State,
    flushed: list[list[str]],
) -> None:
    make.alias("team@example.org", ["someone@elsewhere.example"])
    before = db_state()
    body = {"address": "team@example.org", "password": PASSWORD}
    problem(admin.post(MAILBOXES, json=body), 409, detail_contains="alias")
    assert db_state() == before
    assert flushed == []


def test_mailbox_in_unhosted_domain_is_422(
    admin: TestClient, problem: Problem, db_state: State
) -> None:
    before = db_state()
    body = {"address": "alice@unknown.example", "password": PASSWORD}
    problem(admin.post(MAILBOXES, json=body), 422, detail_contains="not hosted")
    assert db_state() == before


def test_mailbox_in_alias_domain_is_422_pointing_to_the_target(
    admin: TestClient, problem: Problem, db_state: State
) -> None:
    alias_domain = {"name": "alias.example", "target_domain": "example.org"}
    assert admin.post(f"{API}/alias-domains", json=alias_domain).status_code == 201
    before = db_state()
    body = {"address": "alice@alias.example", "password": PASSWORD}
    problem(admin.post(MAILBOXES, json=body), 422, detail_contains="example.org")
    assert db_state() == before


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("user+tag@example.org", id="plus"),
        pytest.param("alice@example.org\r\nRCPT TO:<x@y>", id="crlf"),
        pytest.param("ali\nce@example.org", id="lf"),
        pytest.param("ali\x00ce@example.org", id="nul"),
        pytest.param("al'ice@example.org", id="quote"),
        pytest.param('"alice"@example.org', id="quoted"),
        pytest.param("al%ice@example.org", id="percent"),
        pytest.param("../../etc@example.org", id="path"),
        pytest.param("al;ice@example.org", id="semicolon"),
        pytest.param("jürgen@example.org", id="non-ascii"),
        pytest.param("@example.org", id="catch-all"),
        pytest.param("alice", id="no-domain"),
        pytest.param("x" * 65 + "@example.org", id="local-65"),
        pytest.param("x" * 10_000 + "@example.org", id="10000-chars"),
    ],
)
def test_invalid_address_is_422_and_writes_nothing(
    admin: TestClient,
    problem: Problem,
    db_state: State,
    flushed: list[list[str]],
    address: str,
) -> None:
    before = db_state()
    problem(admin.post(MAILBOXES, json={"address": address, "password": PASSWORD}), 422)
    assert db_state() == before
    assert admin.get(MAILBOXES).json()["total"] == 0
    assert flushed == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"password": "short"}, id="password-short"),
        pytest.param({"password": "p" * 1025}, id="password-1025"),
        pytest.param({"password": "p" * 5000}, id="password-5000"),
        pytest.param({"password": "password\r\nline"}, id="password-crlf"),
        pytest.param({"password": "password\x00nul"}, id="password-nul"),
        pytest.param({"password": 12345678}, id="password-number"),
        pytest.param({"quota_mb": -1}, id="quota-negative"),
        pytest.param({"quota_mb": 10_000_001}, id="quota-too-large"),
        pytest.param({"quota_mb": "5"}, id="quota-string"),
        pytest.param({"quota_mb": 5.5}, id="quota-float"),
        pytest.param({"quota_mb": True}, id="quota-bool"),
        pytest.param({"active": "true"}, id="active-string"),
        pytest.param({"maildir": "/etc"}, id="unknown-field"),
        pytest.param({"password_hash": "{PLAIN}x"}, id="hash-field"),
    ],
)
def test_bad_create_request_is_422_and_writes_nothing(
    admin: TestClient,
    problem: Problem,
    db_state: State,
    flushed: list[list[str]],
    body: dict[str, Any],
) -> None:
    before = db_state()
    request = {"address": "alice@example.org", "password": PASSWORD, **body}
    problem(admin.post(MAILBOXES, json=request), 422)
    assert db_state() == before
    assert flushed == []


def test_missing_password_is_422(admin: TestClient, problem: Problem) -> None:
    body = problem(admin.post(MAILBOXES, json={"address": "alice@example.org"}), 422)
    assert "password" in body["detail"]


def test_patch_password(
    make: Any,
    admin: TestClient,
    stored_mailbox: Stored,
    flushed: list[list[str]],
) -> None:
    make.mailbox("alice@example.org", password=PASSWORD)
    flushed.clear()
    response = admin.patch(
        f"{MAILBOXES}/alice@example.org", json={"password": "a brand new secret"}
    )
    assert response.status_code == 200
    assert "password" not in response.json()
    row = stored_mailbox("alice@example.org")
    assert row is not None
    assert verify_password(row.password_hash, "a brand new secret")
    assert not verify_password(row.password_hash, PASSWORD)
    assert flushed == [["alice@example.org"]]


def test_patch_quota_and_active(make: Any, admin: TestClient, flushed: list[list[str]]) -> None:
    make.mailbox("Alice@example.org", quota_mb=100)
    flushed.clear()
    response = admin.patch(f"{MAILBOXES}/ALICE@example.org", json={"quota_mb": 0})
    assert response.status_code == 200
    assert response.json()["quota_mb"] == 0
    response = admin.patch(f"{MAILBOXES}/alice@example.org", json={"active": False})
    assert response.json()["active"] is False
    assert response.json()["quota_mb"] == 0
    stored = admin.get(f"{MAILBOXES}/alice@example.org").json()
    assert (stored["quota_mb"], stored["active"]) == (0, False)
    assert flushed == [["alice@example.org"], ["alice@example.org"]]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"password": "short"}, id="password-short"),
        pytest.param({"password": "new\npassword"}, id="password-lf"),
        pytest.param({"quota_mb": "5"}, id="quota-string"),
        pytest.param({"quota_mb": -5}, id="quota-negative"),
        pytest.param({"password": "a valid new password", "quota_mb": -5}, id="mixed"),
        pytest.param({"active": 0}, id="active-int"),
        pytest.param({"address": "new@example.org"}, id="rename"),
    ],
)
def test_bad_patch_is_422_and_changes_nothing(
    make: Any, admin: TestClient, problem: Problem, db_state: State, body: dict[str, Any]
) -> None:
    make.mailbox("alice@example.org", password=PASSWORD, quota_mb=100)
    before = db_state()
    problem(admin.patch(f"{MAILBOXES}/alice@example.org", json=body), 422)
    # Password hash, quota and active flag are all unchanged, even when one of two
    # changes in the request was valid.
    assert db_state() == before


def test_delete_mailbox(
    make: Any,
    admin: TestClient,
    stored_mailbox: Stored,
    flushed: list[list[str]],
) -> None:
    make.mailbox("alice@example.org")
    make.mailbox("bob@example.org")
    first = stored_mailbox("alice@example.org")
    assert first is not None
    flushed.clear()
    response = admin.delete(f"{MAILBOXES}/Alice@Example.org")
    assert response.status_code == 204
    assert admin.get(f"{MAILBOXES}/alice@example.org").status_code == 404
    assert [m["address"] for m in admin.get(MAILBOXES).json()["items"]] == ["bob@example.org"]
    assert flushed == [["alice@example.org"]]
    # Re-created, the address gets a fresh maildir: it never sees the old owner's mail.
    response = admin.post(MAILBOXES, json={"address": "alice@example.org", "password": PASSWORD})
    assert response.status_code == 201
    second = stored_mailbox("alice@example.org")
    assert second is not None
    assert second.maildir != first.maildir


def test_failed_delete_does_not_flush(
    admin: TestClient, problem: Problem, flushed: list[list[str]]
) -> None:
    problem(admin.delete(f"{MAILBOXES}/nobody@example.org"), 404)
    assert flushed == []
