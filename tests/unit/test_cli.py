"""The `mailyard` command (controller/cli.py) against a migrated SQLite database."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from controller import cli
from controller.db.models import Mailbox
from controller.domain.mail_settings import MIB, SETTING_NAMES
from controller.domain.passwords import verify_password
from controller.domain.setting_rows import load_stored, save_stored
from controller.domain.tokens import authenticate
from controller.engine.apply import ConfigEngine
from controller.errors import Unauthenticated
from controller.settings import Settings, get_settings

Run = Callable[..., tuple[int, str, str]]
Stored = Callable[[str], Mailbox | None]


def test_domain_add_and_list(run: Run) -> None:
    code, out, _ = run("domain", "add", "München.DE", "--description", "Bavaria")
    assert code == 0
    assert "xn--mnchen-3ya.de" in out
    assert run("domain", "add", "example.org")[0] == 0
    code, out, _ = run("domain", "list", "--json")
    assert code == 0
    assert json.loads(out) == [
        {"name": "example.org", "active": True, "description": ""},
        {"name": "xn--mnchen-3ya.de", "active": True, "description": "Bavaria"},
    ]
    code, out, _ = run("domain", "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "ACTIVE", "DESCRIPTION"]
    assert [row.split()[0] for row in rows] == ["example.org", "xn--mnchen-3ya.de"]


def test_empty_list_says_so(run: Run) -> None:
    code, out, _ = run("domain", "list")
    assert code == 0
    assert out.strip() == "(none)"
    code, out, _ = run("mailbox", "list", "--json")
    assert json.loads(out) == []


@pytest.mark.parametrize(
    "name",
    ["bad_name.org", "example.org.", "localhost", "a.com\r\nRCPT TO:<x@y>", ""],
)
def test_invalid_domain_exits_2_with_a_message(run: Run, name: str) -> None:
    code, out, err = run("domain", "add", name)
    assert code == 2
    assert err.startswith("mailyard: ")
    assert len(err.strip()) > len("mailyard: ") + 10
    assert out == ""
    assert json.loads(run("domain", "list", "--json")[1]) == []


def test_duplicate_domain_exits_2(run: Run) -> None:
    assert run("domain", "add", "example.org")[0] == 0
    code, _, err = run("domain", "add", "EXAMPLE.org")
    assert code == 2
    assert "already" in err


def test_mailbox_add_with_password_from_stdin(run: Run, stored_mailbox: Stored) -> None:
    assert run("domain", "add", "example.org")[0] == 0
    code, out, _ = run(
        "mailbox",
        "add",
        "Alice@Example.org",
        "--password-stdin",
        "--quota-mb",
        "2048",
        stdin="correct horse battery\n",
    )
    assert code == 0
    assert "alice@example.org" in out
    row = stored_mailbox("alice@example.org")
    assert row is not None
    assert row.quota_mb == 2048
    # The line break that ends the input is not part of the password.
    assert verify_password(row.password_hash, "correct horse battery")

    code, out, _ = run("mailbox", "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ADDRESS", "QUOTA_MB", "ACTIVE"]
    assert [row.split() for row in rows] == [["alice@example.org", "2048", "True"]]
    code, out, _ = run("mailbox", "list", "--domain", "example.org", "--json")
    assert json.loads(out) == [{"address": "alice@example.org", "quota_mb": 2048, "active": True}]


@pytest.mark.parametrize(
    ("address", "password"),
    [
        ("alice@example.org", "short\n"),
        ("alice@example.org", "\n"),
        ("alice+tag@example.org", "correct horse battery\n"),
        ("alice@unknown.example", "correct horse battery\n"),
    ],
)
def test_invalid_mailbox_exits_2_and_writes_nothing(run: Run, address: str, password: str) -> None:
    assert run("domain", "add", "example.org")[0] == 0
    code, _, err = run("mailbox", "add", address, "--password-stdin", stdin=password)
    assert code == 2
    assert err.startswith("mailyard: ")
    assert json.loads(run("mailbox", "list", "--json")[1]) == []


def test_mailbox_passwd_and_delete(run: Run, stored_mailbox: Stored) -> None:
    run("domain", "add", "example.org")
    run("mailbox", "add", "alice@example.org", "--password-stdin", stdin="first password\n")
    code, _, _ = run(
        "mailbox", "passwd", "alice@example.org", "--password-stdin", stdin="second password\n"
    )
    assert code == 0
    row = stored_mailbox("alice@example.org")
    assert row is not None
    assert verify_password(row.password_hash, "second password")
    assert not verify_password(row.password_hash, "first password")
    code, _, err = run("domain", "delete", "example.org")
    assert code == 2
    assert "cascade" in err
    assert run("mailbox", "delete", "alice@example.org")[0] == 0
    assert stored_mailbox("alice@example.org") is None
    assert run("mailbox", "delete", "alice@example.org")[0] == 2
    assert run("domain", "delete", "example.org")[0] == 0
    assert json.loads(run("domain", "list", "--json")[1]) == []


def test_token_create_prints_a_working_scoped_token(
    run: Run, sessions: sessionmaker[Session]
) -> None:
    assert run("domain", "add", "example.org")[0] == 0
    code, out, err = run("token", "create", "hosting panel", "--domain", "Example.ORG")
    assert code == 0
    secret = out.strip()
    assert secret.startswith("mailyard_")
    assert "not shown again" in err
    with sessions() as session:
        principal = authenticate(session, secret)
    assert principal.name == "hosting panel"
    assert principal.is_admin is False
    assert principal.read_only is False
    assert principal.domains == frozenset({"example.org"})
    code, out, _ = run("token", "list", "--json")
    listed = json.loads(out)
    assert [(t["name"], t["domains"], t["admin"]) for t in listed] == [
        ("hosting panel", "example.org", False)
    ]
    assert secret.split("_", 2)[2] not in out
    # Revoked, it no longer authenticates.
    assert run("token", "revoke", str(listed[0]["id"]))[0] == 0
    with sessions() as session, pytest.raises(Unauthenticated):
        authenticate(session, secret)


def test_token_create_admin_and_read_only(run: Run, sessions: sessionmaker[Session]) -> None:
    code, out, _ = run("token", "create", "auditor", "--admin", "--read-only")
    assert code == 0
    with sessions() as session:
        principal = authenticate(session, out.strip())
    assert principal.is_admin is True
    assert principal.read_only is True


@pytest.mark.parametrize(
    "args",
    [
        ("token", "create", "nobody"),  # neither admin nor a domain
        ("token", "create", "both", "--admin", "--domain", "example.org"),
        ("token", "create", "bad", "--domain", "bad_domain.org"),
    ],
)
def test_invalid_token_exits_2(run: Run, args: tuple[str, ...]) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    assert err.startswith("mailyard: ")
    assert json.loads(run("token", "list", "--json")[1]) == []


def test_token_create_with_expiry_and_networks(run: Run, app: FastAPI) -> None:
    assert run("domain", "add", "example.org")[0] == 0
    code, out, _ = run(
        "token",
        "create",
        "panel",
        "--domain",
        "example.org",
        "--expires-in-days",
        "30",
        "--network",
        "203.0.113.0/24",
        "--network",
        "2001:db8::/48",
    )
    assert code == 0
    secret = out.strip()
    for address, status in (("203.0.113.9", 200), ("198.51.100.9", 401)):
        client = TestClient(
            app, client=(address, 40000), headers={"Authorization": f"Bearer {secret}"}
        )
        assert client.get("/api/v1/domains").status_code == status
    code, out, _ = run("token", "list", "--json")
    (listed,) = [t for t in json.loads(out) if t["name"] == "panel"]
    assert listed["networks"] == "203.0.113.0/24,2001:db8::/48"
    assert listed["expires"] != "never"
    assert listed["last_used_from"] == "203.0.113.9"
    assert listed["last_used"] != "never"
    code, out, _ = run("token", "list")
    assert "LAST_USED_FROM" in out.splitlines()[0]
    assert "203.0.113.9" in out


@pytest.mark.parametrize(
    "args",
    [
        ("--network", "10.0.0.1/8"),
        ("--network", "not-a-network"),
        ("--expires-in-days", "0"),
        ("--domain", "missing.example"),
    ],
)
def test_token_create_refuses_bad_limits(run: Run, args: tuple[str, ...]) -> None:
    scope = () if args[0] == "--domain" else ("--admin",)
    code, out, err = run("token", "create", "panel", *scope, *args)
    assert code == 2
    assert out == ""
    assert err.startswith("mailyard: ")


def test_usage_errors_exit_2(run: Run) -> None:
    with pytest.raises(SystemExit) as info:
        run("domain")
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        run("mailbox", "add", "alice@example.org", "--quota-mb", "lots")
    assert info.value.code == 2


def test_admin_token_before_first_start(run: Run) -> None:
    code, out, err = run("admin-token")
    assert code == 1
    assert out == ""
    assert "first start" in err


def test_mailbox_add_without_quota_uses_the_default_quota_setting(
    run: Run, stored_mailbox: Stored, sessions: sessionmaker[Session]
) -> None:
    assert run("domain", "add", "example.org")[0] == 0
    stdin = "correct horse battery\n"
    code, out, _ = run("mailbox", "add", "one@example.org", "--password-stdin", stdin=stdin)
    assert code == 0
    assert "(quota 1024 MiB)" in out
    with sessions.begin() as session:
        save_stored(session, {"default_quota_mb": 0})
    assert run("mailbox", "add", "two@example.org", "--password-stdin", stdin=stdin)[0] == 0
    one, two = stored_mailbox("one@example.org"), stored_mailbox("two@example.org")
    assert one is not None
    assert two is not None
    assert (one.quota_mb, two.quota_mb) == (1024, 0)


def test_settings_show(run: Run, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        save_stored(
            session,
            {
                "message_size_limit": 10 * MIB,
                "relayhost": "[smtp.example.net]:587",
                "relayhost_username": "mailer",
                "relayhost_password": "hunter2 secret",
            },
        )
    code, out, _ = run("settings", "show", "--json")
    assert code == 0
    values = json.loads(out)
    assert list(values) == list(SETTING_NAMES)
    assert values["message_size_limit"] == 10 * MIB
    assert values["relayhost_password"] == "********"
    code, out, _ = run("settings", "show")
    assert code == 0
    assert f"message_size_limit = {10 * MIB}" in out.splitlines()
    assert 'hostname = "mail.example.com"' in out.splitlines()
    assert "hunter2" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("message_size_limit=1",), "message_size_limit"),
        (("not_a_setting=1",), "is not a Mailyard setting"),
        (("message_size_limit",), "is not NAME=VALUE"),
        (("helo_restrictions=permit_mynetworks reject",), "helo_restrictions"),
        # Valid, but without Docker nothing can check it: refused, nothing stored.
        (("message_size_limit=10485760",), "Docker"),
    ],
)
def test_settings_set_refusals_exit_2_and_store_nothing(
    run: Run, sessions: sessionmaker[Session], args: tuple[str, ...], message: str
) -> None:
    code, out, err = run("settings", "set", *args)
    assert code == 2
    assert out == ""
    assert err.startswith("mailyard: ")
    assert message.lower() in err.lower()
    with sessions() as session:
        assert load_stored(session) == {}


def test_settings_set_nothing_changed(run: Run) -> None:
    code, out, _ = run(
        "settings", "set", "message_size_limit=52428800", "--reset", "recipient_limit"
    )
    assert code == 0
    assert out.strip() == "nothing changed"


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("26214400", 26214400),
        ("true", True),
        ('["imap", "lmtp"]', ["imap", "lmtp"]),
        ("127.0.0.0/8, 10.0.0.0/8", ["127.0.0.0/8", "10.0.0.0/8"]),
        ("[smtp.example.net]:587", "[smtp.example.net]:587"),
        (">=TLSv1.3", ">=TLSv1.3"),
        ("4h", "4h"),
    ],
)
def test_setting_values_on_the_command_line(raw: str, value: object) -> None:
    assert cli._setting_value(raw) == value


def test_config_plan_and_applies(
    run: Run, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    code, out, _ = run("config", "applies", "--json")
    assert code == 0
    assert json.loads(out) == []
    # Before the first start nothing is committed: the plan says so and writes nothing.
    code, out, _ = run("config", "plan")
    assert code == 0
    assert "postfix: running None" in out
    assert "(changes pending)" in out
    assert "+++ desired/postfix/main.cf" in out
    assert not settings.config_dir.exists()
    # After a start (with the command's own settings), everything is up to date.
    ConfigEngine(get_settings(), sessions, runtime=None).reconcile(trigger="startup")
    code, out, _ = run("config", "plan", "--json")
    assert code == 0
    plan = json.loads(out)
    assert {name: service["changed"] for name, service in plan["services"].items()} == {
        "dovecot": False,
        "opendkim": False,
        "postgrey": False,
        "amavis": False,
        "postfix": False,
    }
    code, out, _ = run("config", "plan")
    assert out.count("(up to date)") == 5
    code, out, _ = run("config", "applies", "--json")
    assert [(row["actor"], row["status"]) for row in json.loads(out)] == [("startup", "succeeded")]
    code, out, _ = run("config", "reconcile")
    assert code == 0
    assert out.strip() == "nothing changed"


def test_domain_add_gives_a_signing_key_at_once_and_delete_removes_it(
    run: Run, settings: Settings
) -> None:
    # As POST /domains does: the use case itself makes the key (issue 15).
    assert run("domain", "add", "signed.example")[0] == 0
    key_files = list((settings.state_dir / "dkim" / "signed.example").glob("*.key"))
    assert len(key_files) == 1
    code, out, _ = run("domain", "delete", "signed.example")
    assert code == 0, out
    assert not (settings.state_dir / "dkim" / "signed.example").exists()
