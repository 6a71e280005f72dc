"""/api/v1/settings and /api/v1/config through HTTP.

The `app` fixture's engine has no Docker (runtime=None), as a controller without the
socket: it reads, plans and refuses what it cannot validate. `live` is the same API with
fake containers (fake_runtime.FakeRuntime) behind it, for the changes that go through.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_runtime import FakeRuntime
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from controller.db.models import ConfigApply
from controller.domain.mail_settings import MIB, SETTING_NAMES
from controller.domain.setting_rows import load_stored, save_stored
from controller.domain.tokens import issue_token
from controller.engine.apply import ConfigEngine
from controller.main import create_app
from controller.settings import Settings

API = "/api/v1"
SETTINGS = f"{API}/settings"
PLAN = f"{API}/config/plan"
APPLIES = f"{API}/config/applies"
RELAY_PASSWORD = "hunter2-but-longer"
RELAY = {
    "relayhost": "[smtp.example.net]:587",
    "relayhost_username": "mailer",
    "relayhost_password": RELAY_PASSWORD,
}

Problem = Callable[..., dict[str, Any]]
State = Callable[[], dict[str, list[tuple[Any, ...]]]]


@dataclass
class Tokens:
    scoped: TestClient  # read-write, a.example only
    read_only: TestClient  # admin, read-only
    scoped_read_only: TestClient


@pytest.fixture
def tokens(make: Any, admin: TestClient, client_for: Callable[[str], TestClient]) -> Tokens:
    make.domain("a.example")  # a token is bound to a domain that exists
    requests = {
        "scoped": {"name": "scoped", "domains": ["a.example"]},
        "read_only": {"name": "read-only", "admin": True, "read_only": True},
        "scoped_read_only": {"name": "scoped-ro", "domains": ["a.example"], "read_only": True},
    }
    clients = {}
    for key, body in requests.items():
        response = admin.post(f"{API}/tokens", json=body)
        assert response.status_code == 201, response.text
        clients[key] = client_for(response.json()["token"])
    return Tokens(**clients)


@pytest.fixture
def committed(config_engine: ConfigEngine) -> ConfigEngine:
    """A first start has committed a release of every service."""
    assert config_engine.reconcile(trigger="startup") is not None
    return config_engine


@pytest.fixture
def runtime(settings: Settings) -> FakeRuntime:
    return FakeRuntime(settings.config_dir, {"postfix": 2, "dovecot": 1})


@pytest.fixture
def live(settings: Settings, sessions: sessionmaker[Session], runtime: FakeRuntime) -> TestClient:
    """An admin client of an API whose engine reaches (fake) containers."""
    engine = ConfigEngine(settings, sessions, runtime, gate_timeout=0.05, settle=0)
    assert engine.reconcile(trigger="startup") is not None
    app = create_app(sessions, lambda _addresses: None, engine)
    with sessions() as session:
        secret = issue_token(session, "live admin", is_admin=True, read_only=False).secret
    return TestClient(app, headers={"Authorization": f"Bearer {secret}"})


def _stored(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions() as session:
        return load_stored(session)


def _apply_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(ConfigApply)) or 0)


def _tree(*roots: Path) -> dict[str, str]:
    tree = {}
    for root in roots:
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_symlink():
                tree[str(path)] = "-> " + os.readlink(path)
            elif path.is_file():
                tree[str(path)] = path.read_text()
            else:
                tree[str(path)] = "dir"
    return tree


def _settings(client: TestClient) -> dict[str, Any]:
    response = client.get(SETTINGS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["apply"] is None
    return dict(body["settings"])


# --- reading -------------------------------------------------------------------------------
def test_get_returns_every_setting_with_its_default(admin: TestClient) -> None:
    values = _settings(admin)
    assert list(values) == list(SETTING_NAMES)
    assert values["hostname"] == "mail.example.com"
    assert values["message_size_limit"] == 50 * MIB
    assert values["mynetworks"] == ["127.0.0.0/8"]
    assert values["helo_required"] is True
    assert values["relayhost_password"] is None


def test_get_masks_the_relayhost_password(
    admin: TestClient, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        save_stored(session, RELAY)
    response = admin.get(SETTINGS)
    assert response.status_code == 200
    assert RELAY_PASSWORD not in response.text
    values = response.json()["settings"]
    assert values["relayhost_password"] == "********"
    assert values["relayhost"] == RELAY["relayhost"]
    assert values["relayhost_username"] == "mailer"


def test_schema_describes_every_setting(admin: TestClient) -> None:
    response = admin.get(f"{SETTINGS}/schema")
    assert response.status_code == 200
    properties = response.json()["properties"]
    assert set(properties) == set(SETTING_NAMES)
    for name, schema in properties.items():
        assert len(schema["description"]) > 20, name
    assert properties["message_size_limit"]["minimum"] == MIB
    assert properties["message_size_limit"]["default"] == 50 * MIB
    assert "postscreen_greet_action" in properties


def test_settings_are_admin_only(
    admin: TestClient, client: TestClient, tokens: Tokens, problem: Problem
) -> None:
    problem(client.get(SETTINGS), 401)
    for who in (tokens.scoped, tokens.scoped_read_only):
        problem(who.get(SETTINGS), 403, detail_contains="admin")
        problem(who.get(f"{SETTINGS}/schema"), 403)
        problem(who.post(PLAN, json={}), 403)
        problem(who.get(APPLIES), 403)
    # A read-only admin token reads and plans, but never changes anything.
    assert _settings(tokens.read_only) == _settings(admin)
    assert tokens.read_only.get(f"{SETTINGS}/schema").status_code == 200
    assert tokens.read_only.get(APPLIES).status_code == 200


@pytest.mark.parametrize("method", ["patch", "put"])
def test_only_read_write_admin_tokens_change_settings(
    tokens: Tokens,
    problem: Problem,
    db_state: State,
    sessions: sessionmaker[Session],
    method: str,
) -> None:
    before = db_state()
    for who, detail in (
        (tokens.scoped, "admin"),
        (tokens.scoped_read_only, "admin"),
        (tokens.read_only, "read-only"),
    ):
        send = getattr(who, method)
        problem(send(SETTINGS, json={"message_size_limit": 10 * MIB}), 403, detail_contains=detail)
    problem(tokens.read_only.post(f"{API}/config/reconcile"), 403)
    assert db_state() == before
    assert _apply_count(sessions) == 0


# --- refused changes -----------------------------------------------------------------------
INVALID = [
    ({"message_size_limit": 1}, "message_size_limit"),
    ({"message_size_limit": "fifty"}, "message_size_limit"),
    ({"helo_restrictions": ["permit_mynetworks, reject"]}, "helo_restrictions"),
    ({"recipient_restrictions": ["reject\nmynetworks = 0.0.0.0/0"]}, "recipient_restrictions"),
    ({"mynetworks": ["10.0.0.0/8\n0.0.0.0/0"]}, "mynetworks"),
    ({"hostname": "mail.example.com\r\nx"}, "hostname"),
    ({"delay_warning_time": "5"}, "delay_warning_time"),
    ({"dovecot_protocols": ["imap"]}, "dovecot_protocols"),
    ({"relayhost_username": "mailer"}, "relayhost"),
    ({"myhostname": "mx.example.com"}, "myhostname"),
    ({"minimal_backoff_time": "1d"}, "minimal_backoff_time"),
]


@pytest.mark.parametrize(
    "case",
    [(method, body, named) for method in ("patch", "put") for body, named in INVALID],
    ids=lambda v: f"{v[0]}-{str(v[1])[:30]}",
)
def test_invalid_values_are_422_naming_the_setting_and_store_nothing(
    admin: TestClient,
    problem: Problem,
    db_state: State,
    settings: Settings,
    case: tuple[str, dict[str, Any], str],
) -> None:
    method, body, named = case
    before, shown = db_state(), _settings(admin)  # db_state includes the applies
    response = getattr(admin, method)(SETTINGS, json=body)
    detail = problem(response, 422, detail_contains=named)["detail"]
    assert "\n" not in detail
    assert db_state() == before
    assert _settings(admin) == shown
    assert not settings.config_dir.exists()  # refused before anything was rendered


def test_unknown_setting_says_it_is_not_a_mailyard_setting(
    admin: TestClient, problem: Problem
) -> None:
    body = problem(admin.patch(SETTINGS, json={"smtpd_banner": "hello"}), 422)
    assert "smtpd_banner: is not a Mailyard setting" in body["detail"]


def test_a_body_that_is_not_an_object_is_422(admin: TestClient, problem: Problem) -> None:
    problem(admin.patch(SETTINGS, json=["message_size_limit", 1]), 422)


def test_without_docker_a_valid_change_is_503_and_stores_nothing(
    admin: TestClient,
    problem: Problem,
    db_state: State,
    committed: ConfigEngine,
    settings: Settings,
) -> None:
    before, shown = db_state(), _settings(admin)
    assert before["config_applies"]  # the first start's
    current = os.readlink(settings.config_dir / "postfix" / "current")
    response = admin.patch(SETTINGS, json={"message_size_limit": 10 * MIB})
    problem(response, 503, detail_contains="docker")
    assert db_state() == before  # no setting, no apply record
    assert _settings(admin) == shown
    assert os.readlink(settings.config_dir / "postfix" / "current") == current


def test_a_change_answered_503_writes_nothing_to_the_config_volume(
    admin: TestClient, committed: ConfigEngine, settings: Settings
) -> None:
    before = _tree(settings.config_dir)
    assert admin.patch(SETTINGS, json={"message_size_limit": 10 * MIB}).status_code == 503
    assert _tree(settings.config_dir) == before


def test_identical_values_answer_200_with_no_apply(
    admin: TestClient, db_state: State, sessions: sessionmaker[Session]
) -> None:
    before = db_state()
    shown = _settings(admin)
    # Without Docker: nothing to validate, since nothing changes.
    for body in ({"message_size_limit": 50 * MIB}, {"mynetworks": [" 127.0.0.0/8"]}, shown):
        response = admin.patch(SETTINGS, json=body)
        assert response.status_code == 200, response.text
        assert response.json() == {"settings": shown, "apply": None}
    assert db_state() == before
    assert _apply_count(sessions) == 0


def test_a_setting_no_service_reads_changes_without_docker(
    admin: TestClient, make: Any, sessions: sessionmaker[Session], committed: ConfigEngine
) -> None:
    # default_quota_mb only affects new mailboxes: no file changes, nothing to validate.
    make.domain("example.org")
    assert make.mailbox("before@example.org")["quota_mb"] == 1024
    response = admin.patch(SETTINGS, json={"default_quota_mb": 2048})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["settings"]["default_quota_mb"] == 2048
    assert body["apply"]["status"] == "succeeded"
    assert body["apply"]["services"] == {}
    assert make.mailbox("after@example.org")["quota_mb"] == 2048
    assert make.mailbox("explicit@example.org", quota_mb=5)["quota_mb"] == 5
    # Existing mailboxes keep theirs.
    assert admin.get(f"{API}/mailboxes/before@example.org").json()["quota_mb"] == 1024
    # null returns it to the default.
    assert admin.patch(SETTINGS, json={"default_quota_mb": None}).status_code == 200
    assert _stored(sessions) == {}
    assert make.mailbox("later@example.org")["quota_mb"] == 1024


# --- plan -----------------------------------------------------------------------------------
def test_plan_shows_a_diff_and_writes_nothing(
    admin: TestClient,
    committed: ConfigEngine,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    roots = (settings.config_dir, settings.certs_dir, settings.state_dir)
    before = _tree(*roots)
    response = admin.post(PLAN, json={"settings": {"message_size_limit": 10 * MIB}})
    assert response.status_code == 200, response.text
    plan = response.json()
    assert _tree(*roots) == before
    assert _stored(sessions) == {}
    assert plan["changes"] == [{"name": "message_size_limit", "old": 50 * MIB, "new": 10 * MIB}]
    postfix = plan["services"]["postfix"]
    assert postfix["changed"] is True
    assert postfix["running_release"] == os.readlink(
        settings.config_dir / "postfix" / "current"
    ).removeprefix("releases/")
    assert postfix["desired_release"] != postfix["running_release"]
    assert postfix["drift"] == []
    diff = postfix["diff"].splitlines()
    assert "--- running/postfix/main.cf" in diff
    assert "+++ desired/postfix/main.cf" in diff
    assert f"-message_size_limit = {50 * MIB}" in diff
    assert f"+message_size_limit = {10 * MIB}" in diff
    assert [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
        f"-message_size_limit = {50 * MIB}",
        f"+message_size_limit = {10 * MIB}",
    ]
    dovecot = plan["services"]["dovecot"]
    assert dovecot["changed"] is False
    assert dovecot["diff"] == ""


def test_plan_without_proposals_shows_no_change(admin: TestClient, committed: ConfigEngine) -> None:
    for response in (admin.post(PLAN), admin.post(PLAN, json={})):
        assert response.status_code == 200, response.text
        plan = response.json()
        assert plan["changes"] == []
        assert {name: s["changed"] for name, s in plan["services"].items()} == {
            "dovecot": False,
            "opendkim": False,
            "postgrey": False,
            "amavis": False,
            "postfix": False,
        }


def test_plan_never_shows_secrets(admin: TestClient, committed: ConfigEngine) -> None:
    response = admin.post(PLAN, json={"settings": RELAY})
    assert response.status_code == 200, response.text
    assert RELAY_PASSWORD not in response.text
    assert "pf-secret" not in response.text  # the database password in the SQL maps
    diff = response.json()["services"]["postfix"]["diff"]
    assert "+[smtp.example.net]:587 mailer:********" in diff.splitlines()
    assert "+smtp_sasl_auth_enable = yes" in diff.splitlines()


def test_plan_before_the_first_release_writes_nothing(
    admin: TestClient, settings: Settings
) -> None:
    response = admin.post(PLAN, json={"settings": {"recipient_limit": 5}})
    assert response.status_code == 200, response.text
    postfix = response.json()["services"]["postfix"]
    assert postfix["running_release"] is None
    assert postfix["changed"] is True
    assert "+smtpd_recipient_limit = 5" in postfix["diff"].splitlines()
    assert not settings.config_dir.exists()


def test_plan_with_invalid_settings_is_422(
    admin: TestClient, committed: ConfigEngine, problem: Problem
) -> None:
    problem(
        admin.post(PLAN, json={"settings": {"message_size_limit": -1}}),
        422,
        detail_contains="message_size_limit",
    )


# --- changes that go through (fake containers) ---------------------------------------------
def test_patch_applies_and_answers_with_the_apply(
    live: TestClient, runtime: FakeRuntime, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    response = live.patch(SETTINGS, json={"message_size_limit": 10 * MIB, "recipient_limit": 50})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["settings"]["message_size_limit"] == 10 * MIB
    assert body["settings"]["recipient_limit"] == 50
    record = body["apply"]
    assert record["status"] == "succeeded"
    assert record["actor"] == "live admin"
    assert {change["name"] for change in record["changes"]} == {
        "message_size_limit",
        "recipient_limit",
    }
    assert live.get(f"{APPLIES}/{record['id']}").json() == record
    main_cf = (settings.config_dir / "postfix" / "current" / "main.cf").read_text()
    assert "\nsmtpd_recipient_limit = 50\n" in main_cf
    assert _stored(sessions) == {"message_size_limit": 10 * MIB, "recipient_limit": 50}


def test_nested_settings_are_stored_as_json_and_shown_back(
    live: TestClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    rules = [{"network": "192.0.2.0/24", "action": "permit"}]
    response = live.patch(SETTINGS, json={"postscreen_access_list": rules})
    assert response.status_code == 200, response.text
    assert response.json()["settings"]["postscreen_access_list"] == rules
    assert _settings(live)["postscreen_access_list"] == rules
    assert _stored(sessions) == {"postscreen_access_list": rules}
    main_cf = (settings.config_dir / "postfix" / "current" / "main.cf").read_text()
    assert "cidr:{ { 192.0.2.0/24 permit } }" in main_cf


def test_put_replaces_the_set_but_keeps_the_password(
    live: TestClient, sessions: sessionmaker[Session]
) -> None:
    assert live.patch(SETTINGS, json={**RELAY, "recipient_limit": 50}).status_code == 200
    # A GET's values sent back unchanged (the password masked) change nothing.
    shown = _settings(live)
    response = live.put(SETTINGS, json=shown)
    assert response.status_code == 200, response.text
    assert response.json()["apply"] is None
    assert _stored(sessions)["relayhost_password"] == RELAY_PASSWORD
    # A PUT without recipient_limit returns it to its default; the password stays.
    body = {name: value for name, value in RELAY.items() if name != "relayhost_password"}
    response = live.put(SETTINGS, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["settings"]["recipient_limit"] == 100
    assert _stored(sessions) == RELAY


def test_a_refusal_by_the_daemon_is_422_with_its_words_and_the_apply_id(
    live: TestClient, runtime: FakeRuntime, problem: Problem, sessions: sessionmaker[Session]
) -> None:
    runtime.checker = lambda service, files: (
        ['unknown smtpd restriction: "reject_nonsense"']
        if service == "postfix" and "reject_nonsense" in files["main.cf"]
        else []
    )
    response = live.patch(SETTINGS, json={"helo_restrictions": ["reject_nonsense"]})
    body = problem(response, 422, detail_contains="postfix refused the new configuration")
    assert 'unknown smtpd restriction: "reject_nonsense"' in body["detail"]
    record = live.get(f"{APPLIES}/{body['apply_id']}").json()
    assert record["status"] == "invalid"
    assert _stored(sessions) == {}


def test_a_rolled_back_change_is_422_and_restores_the_settings(
    live: TestClient, runtime: FakeRuntime, problem: Problem, sessions: sessionmaker[Session]
) -> None:
    old = runtime.committed("postfix")
    runtime.health = lambda c: "no banner" if c.number == 2 and c.loaded != old else None
    response = live.patch(SETTINGS, json={"message_size_limit": 10 * MIB})
    body = problem(response, 422, detail_contains="rolled back")
    assert live.get(f"{APPLIES}/{body['apply_id']}").json()["status"] == "rolled_back"
    assert _settings(live)["message_size_limit"] == 50 * MIB
    assert _stored(sessions) == {}
    assert runtime.committed("postfix") == old


def test_applies_are_listed_newest_first_and_paginated(live: TestClient, problem: Problem) -> None:
    for limit in (10, 20, 30):
        response = live.patch(SETTINGS, json={"recipient_limit": limit})
        assert response.status_code == 200, response.text
    everything = live.get(APPLIES).json()
    assert everything["total"] == 4  # the first start and three changes
    ids = [item["id"] for item in everything["items"]]
    assert ids == sorted(ids, reverse=True)
    assert everything["items"][-1]["trigger"] == "startup"
    assert everything["items"][0]["changes"] == [{"name": "recipient_limit", "old": 20, "new": 30}]
    first = live.get(APPLIES, params={"limit": 3}).json()
    second = live.get(APPLIES, params={"limit": 3, "offset": 3}).json()
    assert (first["total"], first["limit"], first["offset"]) == (4, 3, 0)
    assert [item["id"] for item in first["items"] + second["items"]] == ids
    assert len(second["items"]) == 1
    for item in everything["items"]:
        assert "previous_settings" not in item
    filtered = live.get(APPLIES, params={"status": "succeeded", "limit": 1}).json()
    assert filtered["total"] == 4
    assert live.get(APPLIES, params={"status": "rolled_back"}).json()["total"] == 0
    problem(live.get(APPLIES, params={"limit": 0}), 422)
    problem(live.get(f"{APPLIES}/999999"), 404)


def test_reconcile_answers_204_when_everything_runs_the_desired_release(
    live: TestClient, runtime: FakeRuntime, settings: Settings
) -> None:
    response = live.post(f"{API}/config/reconcile")
    assert response.status_code == 204
    # A hand edit is drift: reconcile rolls out a fresh copy and answers with the apply.
    current = settings.config_dir / "postfix" / "current" / "main.cf"
    current.write_text(current.read_text() + "# edited\n")
    response = live.post(f"{API}/config/reconcile")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    assert response.json()["trigger"] == "api"
    assert "# edited" not in current.read_text()
