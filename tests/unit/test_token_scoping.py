"""Who may do what: admin, domain-scoped and read-only tokens, and authentication itself.

Tokens are created through the API by the first admin token, as an operator would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

API = "/api/v1"
PASSWORD = "correct horse battery"

Problem = Callable[..., dict[str, Any]]
State = Callable[[], dict[str, list[tuple[Any, ...]]]]


@dataclass
class World:
    admin: TestClient  # created through the API, not the bootstrap token
    scoped: TestClient  # read-write, a.example only
    read_only: TestClient  # admin, read-only
    scoped_read_only: TestClient  # read-only, a.example only
    tokens: dict[str, dict[str, Any]]  # POST /tokens answers by name


@pytest.fixture
def world(
    make: Any,
    admin: TestClient,
    client_for: Callable[[str], TestClient],
) -> World:
    for name in ("a.example", "b.example"):
        make.domain(name)
    make.mailbox("alice@a.example")
    make.mailbox("bob@b.example")
    make.alias("team@a.example", ["alice@a.example"])
    make.alias("sales@b.example", ["bob@b.example"])
    make.alias("@b.example", ["bob@b.example"])
    for name, target in (("a-alias.example", "a.example"), ("b-alias.example", "b.example")):
        body = {"name": name, "target_domain": target}
        assert admin.post(f"{API}/alias-domains", json=body).status_code == 201
    requests = {
        "admin": {"name": "admin", "admin": True},
        "scoped": {"name": "scoped", "domains": ["a.example"]},
        "read_only": {"name": "read-only", "admin": True, "read_only": True},
        "scoped_read_only": {"name": "scoped-ro", "domains": ["a.example"], "read_only": True},
    }
    tokens = {}
    for key, body in requests.items():
        response = admin.post(f"{API}/tokens", json=body)
        assert response.status_code == 201, response.text
        tokens[key] = response.json()
    return World(
        admin=client_for(tokens["admin"]["token"]),
        scoped=client_for(tokens["scoped"]["token"]),
        read_only=client_for(tokens["read_only"]["token"]),
        scoped_read_only=client_for(tokens["scoped_read_only"]["token"]),
        tokens=tokens,
    )


def _names(response: Any, key: str) -> list[str]:
    assert response.status_code == 200, response.text
    return [item[key] for item in response.json()["items"]]


# --- what a scoped token sees --------------------------------------------------------------
def test_admin_created_through_the_api_sees_everything(world: World) -> None:
    assert _names(world.admin.get(f"{API}/domains"), "name") == ["a.example", "b.example"]
    assert _names(world.admin.get(f"{API}/mailboxes"), "address") == [
        "alice@a.example",
        "bob@b.example",
    ]
    assert world.admin.post(f"{API}/domains", json={"name": "c.example"}).status_code == 201


@pytest.mark.parametrize("who", ["scoped", "scoped_read_only"])
def test_scoped_listings_show_only_its_domains(world: World, who: str) -> None:
    client: TestClient = getattr(world, who)
    domains = client.get(f"{API}/domains")
    assert _names(domains, "name") == ["a.example"]
    assert domains.json()["total"] == 1
    mailboxes = client.get(f"{API}/mailboxes")
    assert _names(mailboxes, "address") == ["alice@a.example"]
    assert mailboxes.json()["total"] == 1
    aliases = client.get(f"{API}/aliases")
    assert _names(aliases, "address") == ["team@a.example"]
    assert aliases.json()["total"] == 1
    alias_domains = client.get(f"{API}/alias-domains")
    assert _names(alias_domains, "name") == ["a-alias.example"]
    assert alias_domains.json()["total"] == 1
    assert _names(client.get(f"{API}/mailboxes", params={"domain": "a.example"}), "address") == [
        "alice@a.example"
    ]


def test_scoped_listing_filtered_by_another_domain_is_404(world: World, problem: Problem) -> None:
    problem(world.scoped.get(f"{API}/mailboxes", params={"domain": "b.example"}), 404)
    problem(world.scoped.get(f"{API}/aliases", params={"domain": "b.example"}), 404)


@pytest.mark.parametrize(
    "path",
    [
        "/domains/b.example",
        "/mailboxes/bob@b.example",
        "/aliases/sales@b.example",
        "/aliases/@b.example",
        "/alias-domains/b-alias.example",
    ],
)
def test_other_domains_objects_are_404_for_a_scoped_token(
    world: World, problem: Problem, db_state: State, path: str
) -> None:
    assert world.admin.get(f"{API}{path}").status_code == 200  # it does exist
    before = db_state()
    problem(world.scoped.get(f"{API}{path}"), 404)
    problem(world.scoped.patch(f"{API}{path}", json={"active": False}), 404)
    problem(world.scoped.delete(f"{API}{path}"), 404)
    assert db_state() == before
    assert world.admin.get(f"{API}{path}").json()["active"] is True


def test_a_scoped_404_does_not_tell_existing_from_absent(world: World) -> None:
    existing = world.scoped.get(f"{API}/mailboxes/bob@b.example")
    absent = world.scoped.get(f"{API}/mailboxes/nobody@b.example")
    assert existing.status_code == absent.status_code == 404
    assert existing.json()["detail"].replace("bob", "X") == absent.json()["detail"].replace(
        "nobody", "X"
    )
    existing = world.scoped.get(f"{API}/domains/b.example")
    absent = world.scoped.get(f"{API}/domains/c.example")
    assert existing.json()["detail"].replace("b.example", "X") == absent.json()["detail"].replace(
        "c.example", "X"
    )


def test_scoped_token_manages_its_own_domain(world: World, flushed: list[list[str]]) -> None:
    flushed.clear()
    scoped = world.scoped
    assert scoped.get(f"{API}/domains/a.example").json()["name"] == "a.example"
    body = {"address": "carol@a.example", "password": PASSWORD}
    assert scoped.post(f"{API}/mailboxes", json=body).status_code == 201
    assert flushed == [["carol@a.example"]]
    response = scoped.patch(f"{API}/mailboxes/alice@a.example", json={"quota_mb": 5})
    assert response.status_code == 200
    assert response.json()["quota_mb"] == 5
    body = {"address": "info@a.example", "destinations": ["alice@a.example"]}
    assert scoped.post(f"{API}/aliases", json=body).status_code == 201
    assert scoped.delete(f"{API}/aliases/team@a.example").status_code == 204
    assert scoped.delete(f"{API}/mailboxes/carol@a.example").status_code == 204
    assert world.admin.get(f"{API}/mailboxes/carol@a.example").status_code == 404


def test_scoped_token_cannot_create_in_another_domain(
    world: World, problem: Problem, db_state: State, flushed: list[list[str]]
) -> None:
    flushed.clear()
    before = db_state()
    body = {"address": "eve@b.example", "password": PASSWORD}
    problem(world.scoped.post(f"{API}/mailboxes", json=body), 403, detail_contains="b.example")
    body = {"address": "eve@b.example", "destinations": ["x@elsewhere.example"]}
    problem(world.scoped.post(f"{API}/aliases", json=body), 403)
    body = {"address": "@b.example", "destinations": ["x@elsewhere.example"]}
    problem(world.scoped.post(f"{API}/aliases", json=body), 403)
    # A domain that is not hosted at all is refused the same way: nothing is revealed.
    body = {"address": "eve@c.example", "password": PASSWORD}
    problem(world.scoped.post(f"{API}/mailboxes", json=body), 403)
    assert db_state() == before
    assert flushed == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/domains", {"name": "c.example"}),
        ("/alias-domains", {"name": "c-alias.example", "target_domain": "a.example"}),
        ("/relay-domains", {"name": "relay.example"}),
        ("/tokens", {"name": "escalate", "admin": True}),
        ("/tokens", {"name": "same scope", "domains": ["a.example"]}),
    ],
)
def test_non_admin_cannot_create_domain_level_objects(
    world: World, problem: Problem, db_state: State, path: str, body: dict[str, Any]
) -> None:
    before = db_state()
    problem(world.scoped.post(f"{API}{path}", json=body), 403)
    problem(world.scoped_read_only.post(f"{API}{path}", json=body), 403)
    assert db_state() == before


def test_scoped_token_cannot_change_its_own_domain_level_objects(
    world: World, problem: Problem, db_state: State
) -> None:
    before = db_state()
    problem(world.scoped.patch(f"{API}/domains/a.example", json={"active": False}), 403)
    problem(world.scoped.delete(f"{API}/domains/a.example"), 403)
    problem(world.scoped.delete(f"{API}/domains/a.example", params={"cascade": "true"}), 403)
    problem(world.scoped.patch(f"{API}/alias-domains/a-alias.example", json={"active": False}), 403)
    problem(world.scoped.delete(f"{API}/alias-domains/a-alias.example"), 403)
    assert db_state() == before


def test_scoped_token_sees_only_its_relay_domains(
    admin: TestClient, client_for: Callable[[str], TestClient], problem: Problem
) -> None:
    for name in ("r1.example", "r2.example"):
        assert admin.post(f"{API}/relay-domains", json={"name": name}).status_code == 201
    token = admin.post(f"{API}/tokens", json={"name": "relay", "domains": ["r1.example"]})
    relay = client_for(token.json()["token"])
    assert _names(relay.get(f"{API}/relay-domains"), "name") == ["r1.example"]
    assert relay.get(f"{API}/relay-domains/r1.example").status_code == 200
    problem(relay.get(f"{API}/relay-domains/r2.example"), 404)
    problem(relay.patch(f"{API}/relay-domains/r1.example", json={"nexthop": "mx.evil"}), 403)
    problem(relay.delete(f"{API}/relay-domains/r1.example"), 403)
    assert admin.get(f"{API}/relay-domains/r1.example").json()["nexthop"] is None


@pytest.mark.parametrize("who", ["scoped", "read_only", "scoped_read_only"])
def test_tokens_endpoints_are_admin_only(
    world: World, problem: Problem, db_state: State, who: str
) -> None:
    client: TestClient = getattr(world, who)
    token_id = world.tokens["admin"]["id"]
    before = db_state()
    if who == "read_only":
        # An admin token that is read-only may read tokens but never change them.
        assert client.get(f"{API}/tokens").status_code == 200
        assert client.get(f"{API}/tokens/{token_id}").status_code == 200
    else:
        problem(client.get(f"{API}/tokens"), 403)
        problem(client.get(f"{API}/tokens/{token_id}"), 403)
    problem(client.delete(f"{API}/tokens/{token_id}"), 403)
    problem(client.post(f"{API}/tokens", json={"name": "x", "admin": True}), 403)
    assert db_state() == before
    assert world.admin.get(f"{API}/domains").status_code == 200


# --- read-only tokens ----------------------------------------------------------------------
@pytest.mark.parametrize("who", ["read_only", "scoped_read_only"])
def test_read_only_token_reads_but_never_writes(
    world: World, problem: Problem, db_state: State, flushed: list[list[str]], who: str
) -> None:
    client: TestClient = getattr(world, who)
    assert client.get(f"{API}/mailboxes/alice@a.example").status_code == 200
    assert client.get(f"{API}/aliases/team@a.example").status_code == 200
    flushed.clear()
    before = db_state()
    writes = [
        client.post(f"{API}/domains", json={"name": "c.example"}),
        client.patch(f"{API}/domains/a.example", json={"description": "x"}),
        client.delete(f"{API}/domains/a.example", params={"cascade": "true"}),
        client.post(f"{API}/mailboxes", json={"address": "c@a.example", "password": PASSWORD}),
        client.patch(f"{API}/mailboxes/alice@a.example", json={"password": "n3w password"}),
        client.patch(f"{API}/mailboxes/alice@a.example", json={"active": False}),
        client.delete(f"{API}/mailboxes/alice@a.example"),
        client.post(f"{API}/aliases", json={"address": "x@a.example", "destinations": ["y@z.ex"]}),
        client.patch(f"{API}/aliases/team@a.example", json={"active": False}),
        client.delete(f"{API}/aliases/team@a.example"),
        client.post(
            f"{API}/alias-domains", json={"name": "c.example", "target_domain": "a.example"}
        ),
        client.delete(f"{API}/alias-domains/a-alias.example"),
        client.post(f"{API}/relay-domains", json={"name": "relay.example"}),
    ]
    for response in writes:
        problem(response, 403)
    assert "read-only" in writes[0].json()["detail"]
    assert db_state() == before
    assert flushed == []


# --- authentication ------------------------------------------------------------------------
def test_revoked_token_gets_401(world: World, problem: Problem) -> None:
    assert world.scoped.get(f"{API}/domains").status_code == 200
    token_id = world.tokens["scoped"]["id"]
    assert world.admin.delete(f"{API}/tokens/{token_id}").status_code == 204
    problem(world.scoped.get(f"{API}/domains"), 401)
    body = {"address": "late@a.example", "password": PASSWORD}
    problem(world.scoped.post(f"{API}/mailboxes", json=body), 401)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("Bearer", id="bearer-without-token"),
        pytest.param("Basic YWRtaW46YWRtaW4=", id="basic"),
        pytest.param("Token mailyard_0123456789abcdef_secret", id="other-scheme"),
        pytest.param("Bearer garbage", id="garbage"),
        pytest.param("Bearer mailyard_", id="prefix-only"),
        pytest.param("Bearer mailyard_0123456789abcdef", id="no-secret"),
        pytest.param("Bearer other_0123456789abcdef_secret", id="wrong-prefix"),
        pytest.param("Bearer mailyard_0123456789abcdef_secret", id="unknown-key"),
        pytest.param("Bearer mailyard_" + "a" * 300, id="overlong"),
    ],
)
def test_bad_authorization_is_401_with_www_authenticate(
    client: TestClient, problem: Problem, db_state: State, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    before = db_state()
    for response in (
        client.get(f"{API}/domains", headers=headers),
        client.post(f"{API}/domains", json={"name": "x.example"}, headers=headers),
        client.get(f"{API}/tokens", headers=headers),
    ):
        problem(response, 401)
    assert db_state() == before


def test_right_key_id_with_wrong_secret_is_401(world: World, client: TestClient) -> None:
    genuine = world.tokens["admin"]["token"]
    prefix, key_id, secret = genuine.split("_", 2)
    tampered = f"{prefix}_{key_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    response = client.get(f"{API}/domains", headers={"Authorization": f"Bearer {tampered}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    # The genuine token still works: the failed attempt changed nothing.
    response = client.get(f"{API}/domains", headers={"Authorization": f"Bearer {genuine}"})
    assert response.status_code == 200


def test_health_needs_no_token(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- secrets -------------------------------------------------------------------------------
def test_secret_is_returned_only_once(world: World) -> None:
    created = world.tokens["scoped"]
    secret = created["token"]
    for response in (
        world.admin.get(f"{API}/tokens"),
        world.admin.get(f"{API}/tokens/{created['id']}"),
        world.read_only.get(f"{API}/tokens"),
    ):
        assert response.status_code == 200
        assert secret not in response.text
        assert secret.split("_", 2)[2] not in response.text
        assert '"token"' not in response.text


def test_database_stores_only_a_sha256_digest(world: World, engine: Engine) -> None:
    with engine.connect() as connection:
        queries = (
            "SELECT * FROM api_tokens",
            "SELECT * FROM api_token_domains",
            "SELECT * FROM system_state",
        )
        rows = [tuple(row) for query in queries for row in connection.execute(text(query))]
        stored = connection.execute(
            text("SELECT key_id, secret_sha256 FROM api_tokens WHERE id = :id"),
            {"id": world.tokens["scoped"]["id"]},
        ).one()
    assert rows
    everything = " ".join(str(value) for row in rows for value in row)
    for created in world.tokens.values():
        secret = created["token"]
        _, key_id, secret_part = secret.split("_", 2)
        assert secret not in everything
        assert secret_part not in everything
        assert key_id in everything  # the key id finds the row; it is not secret
    _, key_id, secret_part = world.tokens["scoped"]["token"].split("_", 2)
    assert stored.key_id == key_id
    assert stored.secret_sha256 == hashlib.sha256(secret_part.encode()).hexdigest()
