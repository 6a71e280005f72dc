"""Mailing lists: the API and domain layer (controller/domain/lists.py) against an
in-memory stand-in for our own list facade (controller/services/mailman.ListsBackend).

FakeLists implements that protocol, not Mailman's HTTP API: whether Mailman really
creates, moderates and delivers is proven by the stack tests against mailman-core. At the
end, a small test checks MailmanClientBackend's error translation against a local HTTP
server answering a few calls with the status codes Mailman's REST API uses.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from controller import cli
from controller.domain.list_service import (
    HeldMessage,
    ListInfo,
    ListMember,
    ListServiceNotConfigured,
    ListServiceUnavailable,
    ListSettings,
    MemberPage,
)
from controller.engine.apply import ConfigEngine
from controller.errors import Conflict, NotFound
from controller.main import create_app
from controller.services.mailman import MailmanClientBackend
from controller.settings import Settings, get_settings

API = "/api/v1"
Problem = Callable[..., dict[str, Any]]


# --- the fake backend ----------------------------------------------------------------------
@dataclass
class FakeList:
    info: ListInfo
    members: dict[tuple[str, str], ListMember] = field(default_factory=dict)  # (email, role)
    held: dict[int, HeldMessage] = field(default_factory=dict)


_ROLE_ORDER = {"owner": 0, "moderator": 1, "member": 2}


class FakeLists:
    """An in-memory ListsBackend with Mailman's defaults for a new list."""

    def __init__(self) -> None:
        self.domains: set[str] = set()
        self.lists: dict[str, FakeList] = {}
        self.moderated: list[tuple[str, int, str, str | None]] = []
        self.removed_domains: list[str] = []
        self.down: type[ListServiceUnavailable] | None = None  # raise this on every call

    def _check(self) -> None:
        if self.down is ListServiceNotConfigured:
            raise ListServiceNotConfigured("the mailing list service is not set up (test)")
        if self.down is not None:
            raise self.down(
                "the mailing list service (mailman-core) is not reachable: connection "
                "refused (test)"
            )

    def _list(self, address: str) -> FakeList:
        self._check()
        if address not in self.lists:
            raise NotFound(f"mailing list '{address}' not found")
        return self.lists[address]

    def _info(self, entry: FakeList) -> ListInfo:
        count = sum(1 for member in entry.members.values() if member.role == "member")
        return replace(entry.info, member_count=count)

    def list_addresses(self, mail_host: str) -> list[str]:
        self._check()
        return sorted(a for a, entry in self.lists.items() if entry.info.mail_host == mail_host)

    def get_list(self, address: str) -> ListInfo:
        return self._info(self._list(address))

    def create_list(self, mail_host: str, list_name: str, settings: ListSettings) -> ListInfo:
        self._check()
        address = f"{list_name}@{mail_host}"
        if address in self.lists:
            raise Conflict(f"mailing list '{address}' already exists")
        self.domains.add(mail_host)
        info = ListInfo(
            address=address,
            list_name=list_name,
            mail_host=mail_host,
            display_name=list_name.capitalize(),
            subject_prefix=f"[{list_name.capitalize()}] ",
            description="",
            archive_policy="public",
            default_member_action="defer",
            default_nonmember_action="hold",
            member_count=0,
        )
        self.lists[address] = FakeList(replace(info, **settings.changed()))
        return self.get_list(address)

    def update_list(self, address: str, settings: ListSettings) -> ListInfo:
        entry = self._list(address)
        entry.info = replace(entry.info, **settings.changed())
        return self._info(entry)

    def delete_list(self, address: str) -> None:
        self._list(address)
        del self.lists[address]

    def list_members(self, address: str, role: str | None, offset: int, limit: int) -> MemberPage:
        entry = self._list(address)
        chosen = sorted(
            (m for m in entry.members.values() if role is None or m.role == role),
            key=lambda m: (_ROLE_ORDER[m.role], m.email),
        )
        return MemberPage(items=chosen[offset : offset + limit], total=len(chosen))

    def add_member(
        self, address: str, email: str, role: str, display_name: str, delivery: bool
    ) -> ListMember:
        entry = self._list(address)
        if (email, role) in entry.members:
            raise Conflict(f"'{email}' is already a {role} of mailing list '{address}'")
        member = ListMember(email, role, display_name, delivery if role == "member" else None)
        entry.members[(email, role)] = member
        return member

    def remove_member(self, address: str, email: str, role: str) -> None:
        entry = self._list(address)
        if entry.members.pop((email, role), None) is None:
            raise NotFound(f"'{email}' is not a {role} of mailing list '{address}'")

    def set_delivery(self, address: str, email: str, enabled: bool) -> ListMember:
        entry = self._list(address)
        if (email, "member") not in entry.members:
            raise NotFound(f"'{email}' is not a member of mailing list '{address}'")
        member = replace(entry.members[(email, "member")], delivery=enabled)
        entry.members[(email, "member")] = member
        return member

    def held_messages(self, address: str) -> list[HeldMessage]:
        return [self._list(address).held[key] for key in sorted(self._list(address).held)]

    def moderate_held(self, address: str, request_id: int, action: str, reason: str | None) -> None:
        entry = self._list(address)
        if entry.held.pop(request_id, None) is None:
            raise NotFound(f"no held message {request_id} on mailing list '{address}'")
        self.moderated.append((address, request_id, action, reason))

    def remove_domain_if_empty(self, mail_host: str) -> None:
        self._check()
        if not self.list_addresses(mail_host):
            self.domains.discard(mail_host)
            self.removed_domains.append(mail_host)

    # test helper: a post held by Mailman
    def hold(self, address: str, request_id: int, sender: str, subject: str) -> None:
        self.lists[address].held[request_id] = HeldMessage(
            request_id=request_id,
            sender=sender,
            subject=subject,
            reason="The message is not from a list member",
            received=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        )


# --- fixtures ------------------------------------------------------------------------------
@pytest.fixture
def backend() -> FakeLists:
    return FakeLists()


@pytest.fixture
def app(
    sessions: sessionmaker[Session],
    flushed: list[list[str]],
    config_engine: ConfigEngine,
    backend: FakeLists,
) -> FastAPI:
    """The conftest app, with the fake list service (overrides conftest's `app`)."""

    def credentials_changed(addresses: Sequence[str]) -> None:
        flushed.append(list(addresses))

    return create_app(sessions, credentials_changed, config_engine, lists_backend=backend)


@dataclass
class World:
    admin: TestClient
    scoped: TestClient  # read-write, a.example only
    read_only: TestClient  # admin, read-only


@pytest.fixture
def world(make: Any, admin: TestClient, client_for: Callable[[str], TestClient]) -> World:
    for name in ("a.example", "b.example"):
        make.domain(name)
    make.mailbox("alice@a.example")
    make.alias("info-request@a.example", ["alice@a.example"])
    clients = {}
    for key, body in {
        "scoped": {"name": "scoped", "domains": ["a.example"]},
        "read_only": {"name": "read-only", "admin": True, "read_only": True},
    }.items():
        response = admin.post(f"{API}/tokens", json=body)
        assert response.status_code == 201, response.text
        clients[key] = client_for(response.json()["token"])
    return World(admin=admin, scoped=clients["scoped"], read_only=clients["read_only"])


def _create(client: TestClient, domain: str = "a.example", **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/domains/{domain}/lists", json={"name": "team", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


# --- lists ---------------------------------------------------------------------------------
def test_create_with_defaults_and_show(world: World, backend: FakeLists) -> None:
    created = _create(world.admin, name="Team")
    expected = {
        "address": "team@a.example",
        "domain": "a.example",
        "name": "team",
        "display_name": "team",
        "subject_prefix": "[team] ",
        "posting": "members",
        "archiving": False,
        "description": "",
        "member_count": 0,
    }
    assert created == expected
    assert world.admin.get(f"{API}/lists/team@a.example").json() == expected
    assert world.admin.get(f"{API}/lists/TEAM@A.Example").json() == expected
    info = backend.lists["team@a.example"].info
    assert (info.default_member_action, info.default_nonmember_action) == ("defer", "hold")
    assert info.archive_policy == "never"
    listing = world.admin.get(f"{API}/domains/a.example/lists").json()
    assert listing == {"items": [expected], "total": 1, "limit": 100, "offset": 0}


@pytest.mark.parametrize(
    ("posting", "member_action", "nonmember_action"),
    [
        ("members", "defer", "hold"),
        ("anyone", "defer", "accept"),
        ("moderated", "hold", "hold"),
    ],
)
def test_posting_policy_maps_to_mailman_actions(
    world: World, backend: FakeLists, posting: str, member_action: str, nonmember_action: str
) -> None:
    created = _create(world.admin, posting=posting, archiving=True, display_name="The Team")
    assert created["posting"] == posting
    assert created["archiving"] is True
    info = backend.lists["team@a.example"].info
    assert (info.default_member_action, info.default_nonmember_action) == (
        member_action,
        nonmember_action,
    )
    assert info.archive_policy == "public"
    assert info.display_name == "The Team"


def test_patch_changes_only_given_settings(world: World, backend: FakeLists) -> None:
    _create(world.admin, description="Our team")
    response = world.admin.patch(
        f"{API}/lists/team@a.example", json={"posting": "moderated", "subject_prefix": ""}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["posting"] == "moderated"
    assert body["subject_prefix"] == ""
    assert body["description"] == "Our team"
    info = backend.lists["team@a.example"].info
    assert (info.default_member_action, info.default_nonmember_action) == ("hold", "hold")
    body = world.admin.patch(f"{API}/lists/team@a.example", json={"archiving": True}).json()
    assert body["archiving"] is True
    assert backend.lists["team@a.example"].info.archive_policy == "public"
    # Actions changed in Mailman by other means show as "custom".
    entry = backend.lists["team@a.example"]
    entry.info = replace(entry.info, default_nonmember_action="discard")
    assert world.admin.get(f"{API}/lists/team@a.example").json()["posting"] == "custom"


def test_listing_pages(world: World) -> None:
    for name in ("c", "a", "b"):
        _create(world.admin, name=name)
    page = world.admin.get(f"{API}/domains/a.example/lists", params={"limit": 1, "offset": 1})
    assert page.json()["total"] == 3
    assert [item["address"] for item in page.json()["items"]] == ["b@a.example"]


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"name": ""}, "name", "not a list name"),
        ({"name": "-team"}, "name", "not a list name"),
        ({"name": "te am"}, "name", "not a list name"),
        ({"name": "tëam"}, "name", "not a list name"),
        ({"name": "team\n"}, "name", "control character"),
        ({"name": "a" * 53}, "name", "longer than 52"),
        ({"name": "team-request"}, "name", "companion"),
        ({"name": "news-bounces"}, "name", "companion"),
        ({"name": "a..b"}, "name", "not a valid address"),
        ({"name": "team", "display_name": ""}, "display_name", "empty"),
        ({"name": "team", "display_name": "x\r\nBcc: y"}, "display_name", "control"),
        ({"name": "team", "subject_prefix": "[t]\n"}, "subject_prefix", "control"),
        ({"name": "team", "subject_prefix": "x" * 65}, "subject_prefix", "longer"),
        ({"name": "team", "description": "d" * 256}, "description", "longer"),
        ({"name": "team", "posting": "everyone"}, "posting", "not one of"),
    ],
)
def test_create_refuses_bad_values(
    world: World,
    backend: FakeLists,
    *,
    problem: Problem,
    body: dict[str, Any],
    field: str,
    detail: str,
) -> None:
    response = world.admin.post(f"{API}/domains/a.example/lists", json=body)
    result = problem(response, 422, detail_contains=detail)
    assert result["field"] == field
    assert backend.lists == {}


@pytest.mark.parametrize(
    "body",
    [
        {"name": "team", "archiving": "yes"},
        {"name": "team", "owner": "x@y.example"},
        {"name": 5},
    ],
)
def test_create_refuses_malformed_bodies(
    world: World, backend: FakeLists, problem: Problem, body: dict[str, Any]
) -> None:
    problem(world.admin.post(f"{API}/domains/a.example/lists", json=body), 422)
    assert backend.lists == {}


def test_patch_refuses_bad_values(world: World, problem: Problem) -> None:
    _create(world.admin)
    url = f"{API}/lists/team@a.example"
    problem(world.admin.patch(url, json={"posting": "all"}), 422, detail_contains="posting")
    problem(world.admin.patch(url, json={"display_name": "a\u0000"}), 422)
    problem(world.admin.patch(url, json={"name": "other"}), 422)


def test_unknown_domains_and_lists_answer_404(world: World, problem: Problem) -> None:
    problem(world.admin.get(f"{API}/domains/nowhere.example/lists"), 404)
    problem(world.admin.post(f"{API}/domains/nowhere.example/lists", json={"name": "x"}), 404)
    for method, path in [
        ("GET", "/lists/nolist@a.example"),
        ("PATCH", "/lists/nolist@a.example"),
        ("DELETE", "/lists/nolist@a.example"),
        ("GET", "/lists/nolist@a.example/members"),
        ("POST", "/lists/nolist@a.example/members"),
        ("GET", "/lists/nolist@a.example/held"),
        ("POST", "/lists/nolist@a.example/held/1"),
        ("GET", "/lists/not-an-address/held"),
    ]:
        body: dict[str, Any] | None = {
            "PATCH": {"posting": "anyone"},
            "POST": {"email": "x@y.example"} if path.endswith("members") else {"action": "accept"},
        }.get(method)
        response = world.admin.request(method, f"{API}{path}", json=body)
        problem(response, 404)


def test_names_clashing_with_mailboxes_and_aliases_answer_409(
    world: World, backend: FakeLists, problem: Problem
) -> None:
    url = f"{API}/domains/a.example/lists"
    result = problem(world.admin.post(url, json={"name": "alice"}), 409, detail_contains="mailbox")
    assert result["field"] == "name"
    # info-request@ is an alias: it is a companion address of a list named "info".
    problem(
        world.admin.post(url, json={"name": "info"}),
        409,
        detail_contains="'info-request@a.example' is already an alias",
    )
    assert backend.lists == {}
    # The same names are free in another domain.
    assert (
        world.admin.post(f"{API}/domains/b.example/lists", json={"name": "info"}).status_code == 201
    )


def test_duplicate_list_answers_409(world: World, problem: Problem) -> None:
    _create(world.admin)
    problem(
        world.admin.post(f"{API}/domains/a.example/lists", json={"name": "team"}),
        409,
        detail_contains="already exists",
    )


# --- scope ---------------------------------------------------------------------------------
def test_scoped_token_manages_only_its_domains(
    world: World, backend: FakeLists, problem: Problem
) -> None:
    _create(world.scoped)
    _create(world.admin, domain="b.example")
    assert world.scoped.get(f"{API}/lists/team@a.example").status_code == 200
    assert world.scoped.get(f"{API}/domains/a.example/lists").json()["total"] == 1
    # b.example does not exist for this token.
    problem(world.scoped.get(f"{API}/domains/b.example/lists"), 404)
    problem(world.scoped.post(f"{API}/domains/b.example/lists", json={"name": "x"}), 404)
    problem(world.scoped.get(f"{API}/lists/team@b.example"), 404)
    problem(world.scoped.patch(f"{API}/lists/team@b.example", json={"posting": "anyone"}), 404)
    problem(world.scoped.delete(f"{API}/lists/team@b.example"), 404)
    problem(world.scoped.get(f"{API}/lists/team@b.example/members"), 404)
    problem(
        world.scoped.post(f"{API}/lists/team@b.example/members", json={"email": "x@y.example"}),
        404,
    )
    problem(world.scoped.get(f"{API}/lists/team@b.example/held"), 404)
    problem(world.scoped.post(f"{API}/lists/team@b.example/held/1", json={"action": "accept"}), 404)
    assert "team@b.example" in backend.lists
    assert backend.lists["team@b.example"].members == {}


def test_read_only_token_only_reads(world: World, backend: FakeLists, problem: Problem) -> None:
    _create(world.admin)
    backend.hold("team@a.example", 1, "eve@x.example", "Hi")
    ro = world.read_only
    assert ro.get(f"{API}/lists/team@a.example").status_code == 200
    assert ro.get(f"{API}/domains/a.example/lists").status_code == 200
    assert ro.get(f"{API}/lists/team@a.example/members").status_code == 200
    assert ro.get(f"{API}/lists/team@a.example/held").status_code == 200
    for method, path, body in [
        ("POST", "/domains/a.example/lists", {"name": "other"}),
        ("PATCH", "/lists/team@a.example", {"posting": "anyone"}),
        ("DELETE", "/lists/team@a.example", None),
        ("POST", "/lists/team@a.example/members", {"email": "x@y.example"}),
        ("PATCH", "/lists/team@a.example/members/x@y.example", {"delivery": False}),
        ("DELETE", "/lists/team@a.example/members/x@y.example", None),
        ("POST", "/lists/team@a.example/held/1", {"action": "accept"}),
    ]:
        problem(ro.request(method, f"{API}{path}", json=body), 403, detail_contains="read-only")
    assert list(backend.lists) == ["team@a.example"]
    assert backend.lists["team@a.example"].held
    assert backend.moderated == []


# --- members -------------------------------------------------------------------------------
def test_members_owners_and_moderators(world: World, backend: FakeLists, problem: Problem) -> None:
    _create(world.admin)
    url = f"{API}/lists/team@a.example/members"
    response = world.admin.post(url, json={"email": "Bob+Lists@Example.ORG", "display_name": "Bob"})
    assert response.status_code == 201, response.text
    assert response.json() == {
        "email": "bob+lists@example.org",
        "role": "member",
        "display_name": "Bob",
        "delivery": True,
    }
    quiet = world.admin.post(url, json={"email": "carol@example.org", "delivery": False}).json()
    assert quiet["delivery"] is False
    owner = world.admin.post(url, json={"email": "alice@a.example", "role": "owner"}).json()
    assert owner == {
        "email": "alice@a.example",
        "role": "owner",
        "display_name": "",
        "delivery": None,
    }
    assert (
        world.admin.post(url, json={"email": "mod@a.example", "role": "moderator"}).status_code
        == 201
    )
    # The same address may hold several roles, but each only once.
    assert world.admin.post(url, json={"email": "alice@a.example"}).status_code == 201
    problem(world.admin.post(url, json={"email": "alice@a.example"}), 409)

    listing = world.admin.get(url).json()
    assert listing["total"] == 5
    assert [(m["email"], m["role"]) for m in listing["items"]] == [
        ("alice@a.example", "owner"),
        ("mod@a.example", "moderator"),
        ("alice@a.example", "member"),
        ("bob+lists@example.org", "member"),
        ("carol@example.org", "member"),
    ]
    owners = world.admin.get(url, params={"role": "owner"}).json()
    assert [m["email"] for m in owners["items"]] == ["alice@a.example"]
    problem(world.admin.get(url, params={"role": "admin"}), 422)
    assert world.admin.get(f"{API}/lists/team@a.example").json()["member_count"] == 3

    # Delivery off and on again.
    changed = world.admin.patch(f"{url}/bob+lists@example.org", json={"delivery": False})
    assert changed.status_code == 200, changed.text
    assert changed.json()["delivery"] is False
    assert (
        backend.lists["team@a.example"].members[("bob+lists@example.org", "member")].delivery
        is False
    )
    problem(world.admin.patch(f"{url}/mod@a.example", json={"delivery": False}), 404)
    problem(world.admin.patch(f"{url}/bob+lists@example.org", json={}), 422)

    # Removal is per role.
    problem(world.admin.delete(f"{url}/mod@a.example"), 404)
    assert (
        world.admin.delete(f"{url}/mod@a.example", params={"role": "moderator"}).status_code == 204
    )
    assert world.admin.delete(f"{url}/Alice@A.example").status_code == 204
    remaining = {(m["email"], m["role"]) for m in world.admin.get(url).json()["items"]}
    assert ("alice@a.example", "owner") in remaining
    assert ("alice@a.example", "member") not in remaining
    problem(world.admin.delete(f"{url}/nobody@a.example"), 404)
    problem(world.admin.delete(f"{url}/alice@a.example", params={"role": "boss"}), 422)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": "x@y.example\r\nBcc: z@y.example"}, "email"),
        ({"email": "x@localhost"}, "email"),
        ({"email": "x@y.example", "role": "admin"}, "role"),
        ({"email": "x@y.example", "role": "owner", "delivery": False}, "delivery"),
        ({"email": "x@y.example", "display_name": "X\nY"}, "display_name"),
    ],
)
def test_add_member_refuses_bad_values(
    world: World, backend: FakeLists, problem: Problem, body: dict[str, Any], field: str
) -> None:
    _create(world.admin)
    result = problem(world.admin.post(f"{API}/lists/team@a.example/members", json=body), 422)
    assert result["field"] == field
    assert backend.lists["team@a.example"].members == {}


# --- held messages -------------------------------------------------------------------------
def test_held_messages_and_moderation(world: World, backend: FakeLists, problem: Problem) -> None:
    _create(world.admin)
    for request_id in (3, 7, 9):
        backend.hold("team@a.example", request_id, f"p{request_id}@x.example", f"Post {request_id}")
    held = world.admin.get(f"{API}/lists/team@a.example/held").json()
    assert held["total"] == 3
    assert held["items"][0] == {
        "id": 3,
        "sender": "p3@x.example",
        "subject": "Post 3",
        "reason": "The message is not from a list member",
        "received": "2026-01-02T03:04:05Z",
    }
    url = f"{API}/lists/team@a.example/held"
    accepted = world.admin.post(f"{url}/3", json={"action": "accept"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"id": 3, "action": "accept"}
    rejected = world.scoped.post(f"{url}/7", json={"action": "reject", "reason": "Off topic"})
    assert rejected.status_code == 200, rejected.text
    assert backend.moderated == [
        ("team@a.example", 3, "accept", None),
        ("team@a.example", 7, "reject", "Off topic"),
    ]
    problem(world.admin.post(f"{url}/3", json={"action": "accept"}), 404)
    problem(world.admin.post(f"{url}/0", json={"action": "accept"}), 404)
    problem(world.admin.post(f"{url}/abc", json={"action": "accept"}), 422)
    for body, name in [
        ({"action": "approve"}, "action"),
        ({"action": "discard", "reason": "spam"}, "reason"),
        ({"action": "reject", "reason": "line\nbreak"}, "reason"),
        ({}, "action"),
    ]:
        result = problem(world.admin.post(f"{url}/9", json=body), 422)
        assert name in (result.get("field") or result["detail"])
    assert [m["id"] for m in world.admin.get(url).json()["items"]] == [9]
    assert world.admin.post(f"{url}/9", json={"action": "discard"}).status_code == 200


# --- the list service down -----------------------------------------------------------------
def test_service_unavailable_answers_503(
    world: World, backend: FakeLists, problem: Problem
) -> None:
    _create(world.admin)
    backend.down = ListServiceUnavailable
    for method, path, body in [
        ("GET", "/domains/a.example/lists", None),
        ("POST", "/domains/a.example/lists", {"name": "other"}),
        ("GET", "/lists/team@a.example", None),
        ("PATCH", "/lists/team@a.example", {"posting": "anyone"}),
        ("POST", "/lists/team@a.example/members", {"email": "x@y.example"}),
        ("POST", "/lists/team@a.example/held/1", {"action": "accept"}),
    ]:
        response = world.admin.request(method, f"{API}{path}", json=body)
        problem(response, 503, detail_contains="mailman-core")
    # Refusals that need no list service still come first.
    problem(world.admin.post(f"{API}/domains/a.example/lists", json={"name": "alice"}), 409)
    problem(world.read_only.delete(f"{API}/lists/team@a.example"), 403)


def test_lists_disabled(
    sessions: sessionmaker[Session],
    config_engine: ConfigEngine,
    client_for: Callable[[str], TestClient],
    admin_secret: str,
    problem: Problem,
) -> None:
    """Without a backend (MAILYARD_MAILMAN_URL empty): 503, and domains delete freely."""
    plain = create_app(sessions, lambda _addresses: None, config_engine)
    client = TestClient(plain, headers={"Authorization": f"Bearer {admin_secret}"})
    assert client.post(f"{API}/domains", json={"name": "c.example"}).status_code == 201
    problem(client.get(f"{API}/domains/c.example/lists"), 503, detail_contains="not enabled")
    assert client.delete(f"{API}/domains/c.example").status_code == 204


# --- domain deletion -----------------------------------------------------------------------
def test_domain_deletion_refused_while_lists_exist(
    world: World, backend: FakeLists, problem: Problem
) -> None:
    _create(world.admin, domain="b.example")
    for params in ({}, {"cascade": "true"}):
        problem(
            world.admin.delete(f"{API}/domains/b.example", params=params),
            409,
            detail_contains="team@b.example",
        )
    assert world.admin.get(f"{API}/domains/b.example").status_code == 200
    assert world.admin.delete(f"{API}/lists/team@b.example").status_code == 204
    problem(world.admin.get(f"{API}/lists/team@b.example"), 404)
    assert world.admin.delete(f"{API}/domains/b.example").status_code == 204
    assert backend.removed_domains == ["b.example"]


def test_domain_deletion_waits_for_the_list_service(
    world: World, backend: FakeLists, problem: Problem
) -> None:
    backend.down = ListServiceUnavailable
    problem(world.admin.delete(f"{API}/domains/b.example"), 503, detail_contains="mailman-core")
    assert world.admin.get(f"{API}/domains/b.example").status_code == 200
    # Mailman never set up with this stack (no REST password): it holds no lists.
    backend.down = ListServiceNotConfigured
    assert world.admin.delete(f"{API}/domains/b.example").status_code == 204


# --- the `mailyard list` command -----------------------------------------------------------
def test_cli_list_create_and_add_member(
    database_file: Path,
    settings: Settings,
    *,
    backend: FakeLists,
    make: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make.domain("a.example")
    monkeypatch.setenv("MAILYARD_DATABASE_URL", f"sqlite:///{database_file}")
    monkeypatch.setenv("MAILYARD_SECRETS_DIR", str(settings.secrets_dir))
    monkeypatch.setenv("MAILYARD_DOVECOT_HOST", "dovecot.invalid")
    monkeypatch.setattr("controller.wiring.lists_backend", lambda _settings: backend)
    get_settings.cache_clear()
    try:
        code = cli.main(["list", "create", "team@a.example", "--posting", "anyone"])
        assert code == 0, capsys.readouterr().err
        info = backend.lists["team@a.example"].info
        assert (info.default_member_action, info.default_nonmember_action) == ("defer", "accept")
        assert cli.main(["list", "add-member", "team@a.example", "Bob@Example.org"]) == 0
        assert (
            cli.main(["list", "add-member", "team@a.example", "o@a.example", "--role", "owner"])
            == 0
        )
        assert set(backend.lists["team@a.example"].members) == {
            ("bob@example.org", "member"),
            ("o@a.example", "owner"),
        }
        capsys.readouterr()
        assert cli.main(["list", "members", "team@a.example", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [(r["email"], r["role"], r["delivery"]) for r in rows] == [
            ("o@a.example", "owner", "-"),
            ("bob@example.org", "member", "on"),
        ]
        assert cli.main(["list", "create", "alice@nowhere.example"]) == 2
        assert "not found" in capsys.readouterr().err
        assert cli.main(["domain", "delete", "a.example"]) == 2
        assert "mailing list" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


# --- MailmanClientBackend: error translation -----------------------------------------------
class _MailmanLike(BaseHTTPRequestHandler):
    """Answers a few REST calls the way Mailman's REST API does (status codes, and the
    `description` Mailman puts in error bodies)."""

    answers: ClassVar[dict[tuple[str, str], tuple[int, dict[str, Any]]]] = {}
    seen: ClassVar[list[tuple[str, str, str]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.seen.append((self.command, self.path, self.headers.get("Authorization", "")))
        status, body = self.answers.get(
            (self.command, self.path), (404, {"title": "404 Not Found", "description": "x"})
        )
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def mailman_like(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in (
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MailmanLike)
    _MailmanLike.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/3.1"
    finally:
        server.shutdown()
        server.server_close()


def test_mailman_client_backend_translates_errors(mailman_like: str, tmp_path: Path) -> None:
    password_file = tmp_path / "mailman-rest-password"
    backend = MailmanClientBackend(mailman_like, "restadmin", password_file, timeout=5)
    # No password file yet: nothing is sent, and the error says what is missing.
    with pytest.raises(ListServiceNotConfigured, match="mailman-rest-password"):
        backend.get_list("team@a.example")
    assert _MailmanLike.seen == []
    password_file.write_text("s3cret\n")

    _MailmanLike.answers = {
        ("GET", "/3.1/lists/boom@a.example"): (500, {"description": "internal error"}),
        ("GET", "/3.1/lists/locked@a.example"): (401, {"description": "Unauthorized"}),
        ("GET", "/3.1/domains/a.example"): (
            200,
            {"mail_host": "a.example", "self_link": "http://0.0.0.0:8001/3.1/domains/a.example"},
        ),
        ("POST", "/3.1/lists"): (400, {"description": "Mailing list exists"}),
    }
    with pytest.raises(NotFound, match=r"'gone@a\.example' not found"):
        backend.get_list("gone@a.example")
    with pytest.raises(ListServiceUnavailable, match=r"failed \(HTTP 500: internal error\)"):
        backend.get_list("boom@a.example")
    with pytest.raises(ListServiceUnavailable, match="refused the controller's REST credentials"):
        backend.get_list("locked@a.example")
    with pytest.raises(Conflict, match="already exists"):
        backend.create_list("a.example", "team", ListSettings(display_name="Team"))
    assert backend.list_addresses("other.example") == []  # 404 for the domain: no lists

    expected = "Basic " + base64.b64encode(b"restadmin:s3cret").decode()
    assert {auth for _method, _path, auth in _MailmanLike.seen} == {expected}
    assert ("POST", "/3.1/lists", expected) in _MailmanLike.seen


def test_mailman_client_backend_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    password_file = tmp_path / "mailman-rest-password"
    password_file.write_text("s3cret\n")
    # A port nobody listens on: bind one, close it, use it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = MailmanClientBackend(f"http://127.0.0.1:{port}/3.1", "restadmin", password_file)
    with pytest.raises(ListServiceUnavailable, match=r"mailman-core\) is not reachable"):
        backend.list_addresses("a.example")
