"""Shared fixtures: a migrated SQLite database, the API app and authenticated clients.

The schema comes from the real Alembic migration: it is applied once per session to a
template database file, which each test copies, so every test starts from a fresh,
migrated database without paying for the migration again.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy import table as sql_table
from sqlalchemy.orm import Session, sessionmaker

from controller import cli
from controller.db.migrate import upgrade_to_head
from controller.db.models import Mailbox
from controller.db.session import make_engine, make_session_factory
from controller.domain.tokens import issue_token
from controller.engine.apply import ConfigEngine
from controller.main import create_app
from controller.settings import Settings, get_settings

PROBLEM_JSON = "application/problem+json"
API = "/api/v1"
DEFAULT_PASSWORD = "correct horse battery"
# The database passwords the db container would generate; the templates need them.
POSTFIX_DB_PASSWORD = "pf-secret-0123456789"
DOVECOT_DB_PASSWORD = "dc-secret-9876543210"
AMAVIS_DB_PASSWORD = "am-secret-5555555555"
OPENDKIM_DB_PASSWORD = "od-secret-7777777777"

# Every table the API writes to, with the columns that make up its visible state.
# api_tokens.last_used_at is left out: authenticating a request updates it by design.
_STATE_QUERIES = {
    "domains": "SELECT name, description, active, updated_at FROM domains",
    "mailboxes": (
        "SELECT address, local_part, password_hash, quota_mb, active, maildir, updated_at "
        "FROM mailboxes"
    ),
    "aliases": "SELECT address, active, updated_at FROM aliases",
    "alias_destinations": "SELECT alias_id, address, position FROM alias_destinations",
    "alias_domains": "SELECT name, target_domain_id, active, updated_at FROM alias_domains",
    "relay_domains": "SELECT name, nexthop, active, updated_at FROM relay_domains",
    "api_tokens": (
        "SELECT id, key_id, secret_sha256, name, is_admin, read_only, expires_at, networks "
        "FROM api_tokens"
    ),
    "api_token_domains": "SELECT token_id, domain_id FROM api_token_domains",
    "api_token_relay_domains": ("SELECT token_id, relay_domain_id FROM api_token_relay_domains"),
    "system_state": "SELECT key, value FROM system_state",
    "settings": "SELECT name, value FROM settings",
    "config_applies": "SELECT id, trigger, status, changes, services FROM config_applies",
}


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file brought to the newest revision by the real migrations."""
    path = tmp_path_factory.mktemp("template") / "mailyard.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    engine.dispose()
    return path


@pytest.fixture
def database_file(migrated_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "mailyard.sqlite"
    shutil.copyfile(migrated_template, path)
    return path


@pytest.fixture
def engine(database_file: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{database_file}")
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def flushed() -> list[list[str]]:
    """Every call of the credentials-changed hook, in order (one list per call)."""
    return []


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Process settings pointing every volume into tmp_path, with the database passwords
    the templates need (as the db container writes them)."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "db-postfix-password").write_text(POSTFIX_DB_PASSWORD + "\n")
    (secrets_dir / "db-dovecot-password").write_text(DOVECOT_DB_PASSWORD + "\n")
    (secrets_dir / "db-amavis-password").write_text(AMAVIS_DB_PASSWORD + "\n")
    (secrets_dir / "db-opendkim-password").write_text(OPENDKIM_DB_PASSWORD + "\n")
    return Settings(
        hostname="mail.example.com",
        relayhost="",
        db_host="db",
        db_name="mailyard",
        doveadm_port=8080,
        secrets_dir=secrets_dir,
        state_dir=tmp_path / "state",
        config_dir=tmp_path / "config",
        certs_dir=tmp_path / "certs",
        # In a container it is read from the routing table (controller/services/network.py).
    )


@pytest.fixture
def config_engine(settings: Settings, sessions: sessionmaker[Session]) -> ConfigEngine:
    """The apply pipeline without Docker (runtime=None), as in a controller without the
    socket: it can render and plan, but refuses changes it cannot validate."""
    return ConfigEngine(settings, sessions, runtime=None)


@pytest.fixture
def app(
    sessions: sessionmaker[Session], flushed: list[list[str]], config_engine: ConfigEngine
) -> FastAPI:
    def credentials_changed(addresses: Sequence[str]) -> None:
        flushed.append(list(addresses))

    return create_app(sessions, credentials_changed, config_engine)


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    """No Authorization header."""
    return TestClient(app)


@pytest.fixture
def client_for(app: FastAPI) -> Callable[[str], TestClient]:
    def make(secret: str) -> TestClient:
        return TestClient(app, headers={"Authorization": f"Bearer {secret}"})

    return make


@pytest.fixture
def admin_secret(sessions: sessionmaker[Session]) -> str:
    """The first admin token, issued the way the controller's first start does."""
    with sessions() as session:
        return issue_token(session, "first admin", is_admin=True, read_only=False).secret


@pytest.fixture
def admin(client_for: Callable[[str], TestClient], admin_secret: str) -> TestClient:
    return client_for(admin_secret)


@pytest.fixture
def db_state(engine: Engine) -> Callable[[], dict[str, list[tuple[Any, ...]]]]:
    """A snapshot of every row the API can write, to prove a request wrote nothing."""

    def snapshot() -> dict[str, list[tuple[Any, ...]]]:
        with engine.connect() as connection:
            return {
                table: sorted(tuple(row) for row in connection.execute(text(query)))
                for table, query in _STATE_QUERIES.items()
            }

    return snapshot


@pytest.fixture
def count_rows(engine: Engine) -> Callable[[str], int]:
    def count(table: str) -> int:
        assert table in _STATE_QUERIES
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(sql_table(table))) or 0)

    return count


@pytest.fixture
def stored_mailbox(sessions: sessionmaker[Session]) -> Callable[[str], Mailbox | None]:
    """The mailbox row as stored (password hash, maildir), bypassing the API."""

    def load(address: str) -> Mailbox | None:
        with sessions() as session:
            return session.scalar(select(Mailbox).where(Mailbox.address == address))

    return load


def check_problem(
    response: httpx.Response, status: int, *, detail_contains: str | None = None
) -> dict[str, Any]:
    """Assert an RFC 9457 problem response with a useful detail; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["detail"], str)
    assert len(body["detail"]) > 10, body
    if detail_contains is not None:
        assert detail_contains.lower() in body["detail"].lower(), body["detail"]
    if status == 401:
        assert response.headers.get("www-authenticate") == "Bearer"
    return body


@pytest.fixture
def problem() -> Callable[..., dict[str, Any]]:
    return check_problem


@dataclass(frozen=True)
class Factories:
    """Create objects through the API as the first admin; each asserts 201."""

    domain: Callable[..., dict[str, Any]]
    mailbox: Callable[..., dict[str, Any]]
    alias: Callable[..., dict[str, Any]]


@pytest.fixture
def make(admin: TestClient) -> Factories:
    def domain(name: str, **fields: Any) -> dict[str, Any]:
        return _created(admin.post(f"{API}/domains", json={"name": name, **fields}))

    def mailbox(address: str, password: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"address": address, "password": password or DEFAULT_PASSWORD, **fields}
        return _created(admin.post(f"{API}/mailboxes", json=body))

    def alias(address: str, destinations: list[str], **fields: Any) -> dict[str, Any]:
        body = {"address": address, "destinations": destinations, **fields}
        return _created(admin.post(f"{API}/aliases", json=body))

    return Factories(domain=domain, mailbox=mailbox, alias=alias)


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture
def run(
    database_file: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """Run `mailyard ARGS...` against the test database, without a terminal (stdin a
    pipe, as under `docker compose exec -T`); returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("MAILYARD_DATABASE_URL", f"sqlite:///{database_file}")
    monkeypatch.setenv("MAILYARD_STATE_DIR", str(settings.state_dir))
    monkeypatch.setenv("MAILYARD_SECRETS_DIR", str(settings.secrets_dir))
    monkeypatch.setenv("MAILYARD_CONFIG_DIR", str(settings.config_dir))
    monkeypatch.setenv("MAILYARD_CERTS_DIR", str(settings.certs_dir))
    monkeypatch.setenv("MAILYARD_DOVECOT_HOST", "dovecot.invalid")
    monkeypatch.delenv("MAILYARD_DEBUG", raising=False)
    monkeypatch.setattr("controller.wiring.connect", lambda _project=None: None)
    get_settings.cache_clear()

    def invoke(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield invoke
    get_settings.cache_clear()
