"""Login blocks (controller/domain/blocks.py): listing and lifting, through the domain
layer, /api/v1/blocks and `mailyard blocks`. Rows are written here as Dovecot's auth
policy server writes them (images/dovecot/auth_policy.py, tested in test_auth_policy.py).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controller import cli
from controller.db.grants import grant_statements
from controller.db.models import Domain, LoginBlock, utcnow
from controller.domain import blocks
from controller.domain.access import Context, Principal
from controller.domain.pagination import PageRequest
from controller.domain.tokens import issue_token
from controller.errors import Forbidden, InvalidInput, NotFound
from controller.services.registry import database_accounts
from controller.settings import Settings, get_settings

API = "/api/v1"
Add = Callable[..., LoginBlock]
ADMIN = Principal(name="admin", is_admin=True, read_only=False)


@pytest.fixture
def add(sessions: sessionmaker[Session]) -> Add:
    """A row of login_blocks: blocked for `blocked_for` (negative: a block that ended),
    or only counting failures when None."""

    def insert(
        address: str,
        *,
        blocked_for: timedelta | None = timedelta(hours=1),
        failures: int = 20,
        username: str = "alice@example.org",
        protocol: str = "imap",
    ) -> LoginBlock:
        now = utcnow().replace(microsecond=0)
        row = LoginBlock(
            address=address,
            failures=failures,
            window_started_at=now - timedelta(minutes=5),
            last_failure_at=now,
            blocked_at=now if blocked_for is not None else None,
            blocked_until=now + blocked_for if blocked_for is not None else None,
            last_username=username,
            last_protocol=protocol,
        )
        with sessions() as session:
            session.add(row)
            session.commit()
            session.refresh(row)
            session.expunge(row)
        return row

    return insert


def _addresses(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(LoginBlock.address).order_by(LoginBlock.address)))


# --- addresses ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        (" 192.0.2.7\n", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:DB8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::/64", "2001:db8:1:2::/64"),
    ],
)
def test_addresses_are_keyed_as_the_policy_server_keys_them(given: str, key: str) -> None:
    assert blocks.normalize_client_address(given) == key


@pytest.mark.parametrize(
    "given",
    [
        *("", "mail.example.org", "192.0.2.0/24", "192.0.2.7/32"),
        *("2001:db8::/48", "2001:db8::1/64", "192.0.2.7; DROP TABLE login_blocks", "1" * 200),
    ],
)
def test_anything_else_is_refused_with_a_reason(given: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        blocks.normalize_client_address(given)
    assert "IPv4 address such as 192.0.2.7" in refused.value.message
    assert refused.value.field == "address"


# --- domain layer -------------------------------------------------------------------------
def test_only_current_blocks_are_listed(sessions: sessionmaker[Session], add: Add) -> None:
    add("192.0.2.1", blocked_for=timedelta(minutes=10))
    add("192.0.2.2", blocked_for=timedelta(hours=2))
    add("192.0.2.3", blocked_for=timedelta(seconds=-1))  # ended
    add("192.0.2.4", blocked_for=None, failures=7)  # slowed down, not blocked
    with sessions() as session:
        page = blocks.list_blocks(Context(session, ADMIN), PageRequest())
    assert [item.address for item in page.items] == ["192.0.2.2", "192.0.2.1"]
    assert page.total == 2


def test_lifting_deletes_the_row(sessions: sessionmaker[Session], add: Add) -> None:
    add("2001:db8:1:2::/64")
    add("192.0.2.9")
    with sessions() as session:
        assert blocks.lift_block(Context(session, ADMIN), "2001:db8:1:2::abcd") == (
            "2001:db8:1:2::/64"
        )
    assert _addresses(sessions) == ["192.0.2.9"]


def test_an_ended_block_or_a_mere_count_is_not_found(
    sessions: sessionmaker[Session], add: Add
) -> None:
    add("192.0.2.3", blocked_for=timedelta(seconds=-1))
    add("192.0.2.4", blocked_for=None)
    with sessions() as session:
        for address in ("192.0.2.3", "192.0.2.4", "192.0.2.5"):
            with pytest.raises(NotFound, match="is not blocked"):
                blocks.lift_block(Context(session, ADMIN), address)
    assert _addresses(sessions) == ["192.0.2.3", "192.0.2.4"]


def test_only_admins_see_and_lift_blocks(sessions: sessionmaker[Session], add: Add) -> None:
    add("192.0.2.1")
    scoped = Principal(name="t", is_admin=False, read_only=False, domains=frozenset({"a.org"}))
    reader = Principal(name="r", is_admin=True, read_only=True)
    with sessions() as session:
        with pytest.raises(Forbidden):
            blocks.list_blocks(Context(session, scoped), PageRequest())
        with pytest.raises(Forbidden):
            blocks.lift_block(Context(session, scoped), "192.0.2.1")
        with pytest.raises(Forbidden, match="read-only"):
            blocks.lift_block(Context(session, reader), "192.0.2.1")
        assert blocks.list_blocks(Context(session, reader), PageRequest()).total == 1
    assert _addresses(sessions) == ["192.0.2.1"]


# --- API ------------------------------------------------------------------------------------
def test_api_lists_blocks_with_their_details(admin: TestClient, add: Add) -> None:
    row = add("192.0.2.7", username="bob@example.org", protocol="smtp", failures=23)
    response = admin.get(f"{API}/blocks")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 1
    assert body["items"] == [
        {
            "address": "192.0.2.7",
            "failures": 23,
            "first_failure_at": row.window_started_at.isoformat() + "Z",
            "last_failure_at": row.last_failure_at.isoformat() + "Z",
            "blocked_at": row.last_failure_at.isoformat() + "Z",
            "blocked_until": (row.last_failure_at + timedelta(hours=1)).isoformat() + "Z",
            "last_username": "bob@example.org",
            "last_protocol": "smtp",
        }
    ]


def test_api_lifts_a_block(
    admin: TestClient, add: Add, sessions: sessionmaker[Session], problem: Callable[..., Any]
) -> None:
    add("192.0.2.7")
    add("2001:db8:1:2::/64")
    assert admin.delete(f"{API}/blocks/192.0.2.7").status_code == 204
    # An IPv6 /64 in the path, slash included.
    assert admin.delete(f"{API}/blocks/2001:db8:1:2::/64").status_code == 204
    assert _addresses(sessions) == []
    assert admin.get(f"{API}/blocks").json()["total"] == 0
    problem(admin.delete(f"{API}/blocks/192.0.2.7"), 404, detail_contains="is not blocked")
    problem(admin.delete(f"{API}/blocks/not-an-address"), 422, detail_contains="192.0.2.7")
    problem(admin.delete(f"{API}/blocks/192.0.2.0/24"), 422, detail_contains="/64")


def test_api_blocks_are_admin_only(
    client_for: Callable[[str], TestClient],
    client: TestClient,
    sessions: sessionmaker[Session],
    add: Add,
    problem: Callable[..., Any],
) -> None:
    add("192.0.2.7")
    with sessions() as session:
        # A scoped token needs its domain to exist (its scope is the domain's row).
        session.add(Domain(name="a.org"))
        session.commit()
        scoped = issue_token(session, "scoped", is_admin=False, read_only=False, domains=["a.org"])
        reader = issue_token(session, "reader", is_admin=True, read_only=True)
    problem(client.get(f"{API}/blocks"), 401)
    problem(client_for(scoped.secret).get(f"{API}/blocks"), 403, detail_contains="admin")
    problem(client_for(scoped.secret).delete(f"{API}/blocks/192.0.2.7"), 403)
    problem(client_for(reader.secret).delete(f"{API}/blocks/192.0.2.7"), 403)
    # A caller that may not lift learns nothing about the address either.
    problem(client_for(scoped.secret).delete(f"{API}/blocks/not-an-address"), 403)
    assert client_for(reader.secret).get(f"{API}/blocks").json()["total"] == 1
    assert _addresses(sessions) == ["192.0.2.7"]


# --- mailyard blocks ------------------------------------------------------------------------
@pytest.fixture
def run(
    database_file: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[..., tuple[int, str, str]]]:
    monkeypatch.setenv("MAILYARD_DATABASE_URL", f"sqlite:///{database_file}")
    monkeypatch.setenv("MAILYARD_STATE_DIR", str(settings.state_dir))
    monkeypatch.setenv("MAILYARD_SECRETS_DIR", str(settings.secrets_dir))
    monkeypatch.setenv("MAILYARD_DOVECOT_HOST", "dovecot.invalid")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    get_settings.cache_clear()

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield invoke
    get_settings.cache_clear()


def test_cli_parses_the_blocks_commands() -> None:
    parser = cli.build_parser()
    listing = parser.parse_args(["blocks", "list", "--json"])
    assert listing.handler is cli.cmd_blocks_list
    assert listing.json is True
    lift = parser.parse_args(["blocks", "lift", "2001:db8::/64"])
    assert lift.handler is cli.cmd_blocks_lift
    assert lift.address == "2001:db8::/64"
    with pytest.raises(SystemExit):
        parser.parse_args(["blocks", "lift"])


def test_cli_lists_and_lifts(
    run: Callable[..., tuple[int, str, str]], add: Add, sessions: sessionmaker[Session]
) -> None:
    add("192.0.2.7", protocol="pop3")
    code, out, _ = run("blocks", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(row["address"], row["failures"], row["last_protocol"]) for row in rows] == [
        ("192.0.2.7", 20, "pop3")
    ]
    datetime.fromisoformat(rows[0]["blocked_until"])
    code, out, _ = run("blocks", "list")
    assert out.splitlines()[0].split()[:2] == ["ADDRESS", "FAILURES"]
    assert run("blocks", "lift", "192.0.2.7")[:2] == (0, "lifted the block of 192.0.2.7\n")
    assert _addresses(sessions) == []
    code, _, err = run("blocks", "lift", "192.0.2.7")
    assert code == 2
    assert "192.0.2.7 is not blocked" in err
    code, _, err = run("blocks", "lift", "nonsense")
    assert code == 2
    assert "not a client address" in err
    assert run("blocks", "list")[1].strip() == "(none)"


# --- grants ---------------------------------------------------------------------------------
def test_dovecot_may_write_login_blocks_and_nothing_else() -> None:
    statements = grant_statements("mailyard", database_accounts())
    dovecot = [item for item in statements if "'mailyard_dovecot'" in item]
    writes = [item for item in dovecot if not item.startswith("GRANT SELECT ")]
    assert writes == [
        "GRANT SELECT, INSERT, UPDATE, DELETE ON `mailyard`.`login_blocks` "
        "TO 'mailyard_dovecot'@'%'"
    ]
    others = [item for item in statements if "login_blocks" in item and item not in writes]
    assert others == []
