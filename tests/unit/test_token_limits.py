"""Token limits: scope bound to the domain's row, expiry, client networks, last use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from controller.db.models import utcnow

API = "/api/v1"
TOKENS = f"{API}/tokens"
PASSWORD = "correct horse battery"

Problem = Callable[..., dict[str, Any]]
State = Callable[[], dict[str, list[tuple[Any, ...]]]]


def _client(app: FastAPI, token: str, address: str = "203.0.113.7") -> TestClient:
    return TestClient(app, client=(address, 40000), headers={"Authorization": f"Bearer {token}"})


def _create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(TOKENS, json={"name": "panel", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


# --- scope bound to the domain's identity --------------------------------------------------
def test_a_domain_deleted_and_created_again_is_outside_old_tokens(
    app: FastAPI, admin: TestClient, make: Any, problem: Problem
) -> None:
    make.domain("shop.example")
    make.domain("other.example")
    token = _create(admin, domains=["shop.example", "other.example"])
    panel = _client(app, token["token"])
    assert panel.get(f"{API}/domains/shop.example").status_code == 200

    assert admin.delete(f"{API}/domains/shop.example").status_code == 204
    make.domain("shop.example")  # someone else's now, under the same name
    make.mailbox("owner@shop.example")

    problem(panel.get(f"{API}/domains/shop.example"), 404)
    problem(panel.get(f"{API}/mailboxes/owner@shop.example"), 404)
    problem(panel.get(f"{API}/mailboxes", params={"domain": "shop.example"}), 404)
    body = {"address": "intruder@shop.example", "password": PASSWORD}
    problem(panel.post(f"{API}/mailboxes", json=body), 403)
    assert [d["name"] for d in panel.get(f"{API}/domains").json()["items"]] == ["other.example"]
    assert admin.get(f"{TOKENS}/{token['id']}").json()["domains"] == ["other.example"]


def test_a_token_whose_only_domain_is_gone_sees_nothing(
    app: FastAPI, admin: TestClient, make: Any, problem: Problem
) -> None:
    make.domain("gone.example")
    token = _create(admin, domains=["gone.example"])
    assert admin.delete(f"{API}/domains/gone.example").status_code == 204
    make.domain("gone.example")
    panel = _client(app, token["token"])
    listing = panel.get(f"{API}/domains")
    assert listing.status_code == 200
    assert listing.json()["total"] == 0
    assert panel.get(f"{API}/mailboxes").json()["total"] == 0
    problem(panel.get(f"{API}/domains/gone.example/dkim"), 404)
    assert admin.get(f"{TOKENS}/{token['id']}").json()["domains"] == []


def test_a_relay_domain_deleted_and_created_again_is_outside_old_tokens(
    app: FastAPI, admin: TestClient, problem: Problem
) -> None:
    assert admin.post(f"{API}/relay-domains", json={"name": "relay.example"}).status_code == 201
    token = _create(admin, domains=["relay.example"])
    panel = _client(app, token["token"])
    assert panel.get(f"{API}/relay-domains/relay.example").status_code == 200
    assert admin.delete(f"{API}/relay-domains/relay.example").status_code == 204
    assert admin.post(f"{API}/relay-domains", json={"name": "relay.example"}).status_code == 201
    problem(panel.get(f"{API}/relay-domains/relay.example"), 404)
    assert panel.get(f"{API}/relay-domains").json()["total"] == 0


def test_the_scope_is_stored_as_row_ids(admin: TestClient, make: Any, engine: Engine) -> None:
    make.domain("a.example")
    make.domain("b.example")
    token = _create(admin, domains=["b.example"])
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT t.domain_id, d.name FROM api_token_domains t "
                "JOIN domains d ON d.id = t.domain_id WHERE t.token_id = :id"
            ),
            {"id": token["id"]},
        ).all()
        b_id = connection.scalar(text("SELECT id FROM domains WHERE name = 'b.example'"))
    assert [(row.domain_id, row.name) for row in rows] == [(b_id, "b.example")]


# --- expiry --------------------------------------------------------------------------------
def test_expires_in_days_sets_the_expiry(admin: TestClient) -> None:
    before = datetime.now(UTC)
    token = _create(admin, admin=True, expires_in_days=30)
    expires = datetime.fromisoformat(token["expires_at"])  # with its offset (RFC 3339)
    assert before + timedelta(days=30) - timedelta(seconds=1) <= expires
    assert expires <= datetime.now(UTC) + timedelta(days=30)


def test_expires_at_is_stored_in_utc(admin: TestClient) -> None:
    moment = (datetime.now(UTC) + timedelta(days=40)).replace(microsecond=0)
    offset = moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    token = _create(admin, admin=True, expires_at=offset)
    assert token["expires_at"] == moment.replace(tzinfo=None).isoformat() + "Z"
    naive = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    token = _create(admin, admin=True, expires_at=naive.isoformat())
    assert token["expires_at"] == naive.isoformat() + "Z"  # a time without offset is UTC


def test_an_expired_token_is_refused_and_says_so(
    app: FastAPI, admin: TestClient, engine: Engine, problem: Problem
) -> None:
    token = _create(admin, admin=True, expires_in_days=1)
    panel = _client(app, token["token"])
    assert panel.get(f"{API}/domains").status_code == 200
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE api_tokens SET expires_at = :at WHERE id = :id"),
            {"at": utcnow() - timedelta(seconds=1), "id": token["id"]},
        )
    detail = problem(panel.get(f"{API}/domains"), 401, detail_contains="expired")["detail"]
    assert "an admin can create a new one: POST /api/v1/tokens" in detail
    assert "mailyard" not in detail  # the API names API requests, not commands
    problem(panel.post(f"{API}/domains", json={"name": "late.example"}), 401)
    assert admin.get(f"{API}/domains").json()["total"] == 0
    # Someone without the secret learns nothing about the expiry.
    prefix, key_id, secret = token["token"].split("_", 2)
    wrong = _client(app, f"{prefix}_{key_id}_{secret[:-2]}xx")
    assert "expired" not in problem(wrong.get(f"{API}/domains"), 401)["detail"]


# --- client networks -----------------------------------------------------------------------
def test_networks_are_stored_canonical(admin: TestClient) -> None:
    token = _create(
        admin,
        admin=True,
        networks=["192.0.2.7", "2001:DB8:0:0::/48", "198.51.100.0/24", "192.0.2.7/32"],
    )
    assert token["networks"] == ["192.0.2.7/32", "2001:db8::/48", "198.51.100.0/24"]


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("203.0.113.7", True),
        ("203.0.113.255", True),
        ("2001:db8:0:ffff::1", True),
        ("::ffff:203.0.113.9", True),  # an IPv4 client on a dual-stack socket
        ("203.0.114.1", False),
        ("2001:db9::1", False),
        ("10.0.0.1", False),
        ("testclient", False),  # no IP address: cannot be checked, so refused
    ],
)
def test_a_token_works_only_from_its_networks(
    app: FastAPI, admin: TestClient, problem: Problem, address: str, allowed: bool
) -> None:
    token = _create(admin, admin=True, networks=["203.0.113.0/24", "2001:db8::/48"])
    response = _client(app, token["token"], address).get(f"{API}/domains")
    if allowed:
        assert response.status_code == 200, response.text
        return
    detail = problem(response, 401, detail_contains="may not be used from")["detail"]
    # It names the caller's own address, never the networks that would work.
    assert "203.0.113.0" not in detail
    assert "2001:db8::/48" not in detail


def test_last_use_shows_when_and_from_where(app: FastAPI, admin: TestClient) -> None:
    token = _create(admin, admin=True)
    assert token["last_used_at"] is None
    assert token["last_used_from"] is None
    assert _client(app, token["token"], "203.0.113.7").get(f"{API}/domains").status_code == 200
    shown = admin.get(f"{TOKENS}/{token['id']}").json()
    assert shown["last_used_from"] == "203.0.113.7"
    assert shown["last_used_at"] is not None
    # Another address is recorded at once, within the minute's resolution.
    assert _client(app, token["token"], "2001:db8::7").get(f"{API}/domains").status_code == 200
    assert admin.get(f"{TOKENS}/{token['id']}").json()["last_used_from"] == "2001:db8::7"
    listed = {t["id"]: t for t in admin.get(TOKENS).json()["items"]}
    assert listed[token["id"]]["last_used_from"] == "2001:db8::7"


def test_refused_uses_are_not_recorded_as_uses(
    app: FastAPI, admin: TestClient, problem: Problem
) -> None:
    token = _create(admin, admin=True, networks=["192.0.2.0/24"])
    problem(_client(app, token["token"], "198.51.100.1").get(f"{API}/domains"), 401)
    shown = admin.get(f"{TOKENS}/{token['id']}").json()
    assert shown["last_used_at"] is None
    assert shown["last_used_from"] is None


# --- strict validation ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "field"),
    [
        pytest.param({"expires_in_days": 0}, "expires_in_days", id="days-0"),
        pytest.param({"expires_in_days": 3651}, "expires_in_days", id="days-3651"),
        pytest.param({"expires_in_days": "7"}, "expires_in_days", id="days-string"),
        pytest.param({"expires_in_days": 7.5}, "expires_in_days", id="days-float"),
        pytest.param(
            {"expires_in_days": 7, "expires_at": "2099-01-01T00:00:00Z"},
            "expires_in_days",
            id="both",
        ),
        pytest.param({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at", id="past"),
        pytest.param({"expires_at": "2999-01-01T00:00:00Z"}, "expires_at", id="too-far"),
        pytest.param({"expires_at": "tomorrow"}, "expires_at", id="not-a-time"),
        pytest.param({"networks": ["10.0.0.1/8"]}, "networks[0]", id="host-bits"),
        pytest.param({"networks": ["10.0.0.0/33"]}, "networks[0]", id="prefix-33"),
        pytest.param({"networks": ["example.org"]}, "networks[0]", id="name"),
        pytest.param({"networks": ["10.0.0.0/8,0.0.0.0/0"]}, "networks[0]", id="comma"),
        pytest.param({"networks": ["10.0.0.0/8\n"]}, "networks[0]", id="newline"),
        pytest.param({"networks": [" 10.0.0.0/8"]}, "networks[0]", id="space"),
        pytest.param({"networks": ["fe80::%eth0/64"]}, "networks[0]", id="scope-id"),
        pytest.param({"networks": ["192.0.2.0/24", "10.0.0.0/33"]}, "networks[1]", id="second"),
        pytest.param({"networks": "10.0.0.0/8"}, "networks", id="string"),
        pytest.param({"networks": [167772160]}, "networks.0", id="integer"),
        pytest.param({"networks": ["1" * 65]}, "networks.0", id="overlong"),
        pytest.param(
            {"networks": [f"10.0.{n}.0/24" for n in range(33)]}, "networks", id="33-networks"
        ),
    ],
)
def test_bad_expiry_or_networks_are_422_and_write_nothing(
    admin: TestClient, problem: Problem, db_state: State, extra: dict[str, Any], field: str
) -> None:
    before = db_state()
    body = problem(admin.post(TOKENS, json={"name": "x", "admin": True, **extra}), 422)
    assert body.get("field") == field or any(
        error["field"] == field for error in body.get("errors") or []
    ), body
    assert db_state() == before
