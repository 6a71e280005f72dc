"""Migration 0005 (5c3f2e4a1b03): token scopes move from domain names to domain rows,
tokens gain expiry, client networks and the last use's address, and stored settings
that are refused now are repaired. Run on data as revision 0004 left it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from controller.db.migrate import alembic_config
from controller.db.session import make_engine
from controller.domain.mail_settings import build

BEFORE = "4b2e1d3f0a02"
REVISION = "5c3f2e4a1b03"
NOW = "2026-11-30 12:00:00"


def _migrate(engine: Engine, direction: str, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)


def _rows(engine: Engine, query: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(query), params)]


@pytest.fixture
def old_database(tmp_path: Path) -> Engine:
    """Revision 0004 with name-scoped tokens and settings 0005 refuses."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    _migrate(engine, "upgrade", BEFORE)
    statements = [
        "INSERT INTO domains (id, name, created_at, updated_at) VALUES "
        "(1, 'shop.example', :now, :now), (2, 'blog.example', :now, :now)",
        "INSERT INTO relay_domains (id, name, created_at, updated_at) VALUES "
        "(7, 'backup.example', :now, :now)",
        "INSERT INTO alias_domains (id, name, target_domain_id, created_at, updated_at) "
        "VALUES (1, 'shop-alias.example', 1, :now, :now)",
        "INSERT INTO api_tokens (id, key_id, secret_sha256, name, is_admin, read_only, "
        "created_at) VALUES (10, 'k10', 'x', 'panel', 0, 0, :now), "
        "(11, 'k11', 'x', 'prepared', 0, 0, :now), (12, 'k12', 'x', 'admin', 1, 0, :now)",
        # 'gone.example' was deleted (or never created); 'shop-alias.example' is an alias
        # domain, which never gave a token anything.
        "INSERT INTO api_token_domains (token_id, domain) VALUES (10, 'shop.example'), "
        "(10, 'backup.example'), (10, 'gone.example'), (11, 'gone.example'), "
        "(11, 'shop-alias.example')",
        "INSERT INTO settings (name, value, updated_at) VALUES "
        "('postscreen_dnsbl_sites', :sites, :now), ('mynetworks', :networks, :now), "
        "('message_size_limit', '10485760', :now)",
    ]
    params = {
        "sites": json.dumps(
            ["zen.spamhaus.org*3", "bl.example.net", "list.dnswl.org=127.0.[0..255].[1..3]*-2"]
        ),
        "networks": json.dumps(["127.0.0.0/8", "0.0.0.0/0", "192.0.2.0/24"]),
        "now": NOW,
    }
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), params)
    return engine


def test_scopes_are_converted_to_domain_rows(old_database: Engine) -> None:
    _migrate(old_database, "upgrade", REVISION)
    assert _rows(old_database, "SELECT token_id, domain_id FROM api_token_domains") == [(10, 1)]
    assert _rows(old_database, "SELECT token_id, relay_domain_id FROM api_token_relay_domains") == [
        (10, 7)
    ]
    # Names that match no domain are gone: the 'prepared' token now sees nothing.
    assert _rows(old_database, "SELECT COUNT(*) FROM api_token_domains WHERE token_id = 11") == [
        (0,)
    ]
    columns = {column["name"] for column in inspect(old_database).get_columns("api_tokens")}
    assert {"expires_at", "networks", "last_used_from"} <= columns
    assert _rows(
        old_database, "SELECT id, expires_at, networks, last_used_from FROM api_tokens"
    ) == [(10, None, "", None), (11, None, "", None), (12, None, "", None)]


def test_deleting_a_domain_now_deletes_it_from_every_scope(old_database: Engine) -> None:
    _migrate(old_database, "upgrade", REVISION)
    with old_database.begin() as connection:
        connection.execute(text("DELETE FROM alias_domains"))
        connection.execute(text("DELETE FROM domains WHERE id = 1"))
        connection.execute(text("DELETE FROM relay_domains WHERE id = 7"))
        connection.execute(
            text(
                "INSERT INTO domains (id, name, created_at, updated_at) "
                "VALUES (3, 'shop.example', :now, :now)"
            ),
            {"now": NOW},
        )
    assert _rows(old_database, "SELECT * FROM api_token_domains") == []
    assert _rows(old_database, "SELECT * FROM api_token_relay_domains") == []


def test_refused_settings_are_repaired(old_database: Engine) -> None:
    _migrate(old_database, "upgrade", REVISION)
    stored = {
        name: json.loads(value)
        for name, value in _rows(old_database, "SELECT name, value FROM settings")
    }
    assert stored["postscreen_dnsbl_sites"] == [
        "zen.spamhaus.org=127.[0..254].[0..255].[0..255]*3",
        "bl.example.net=127.[0..254].[0..255].[0..255]",
        "list.dnswl.org=127.0.[0..255].[1..3]*-2",
    ]
    assert stored["mynetworks"] == ["127.0.0.0/8", "192.0.2.0/24"]
    assert stored["message_size_limit"] == 10485760
    # What the controller reads at its start is valid again.
    settings = build(stored, {})
    assert settings.mynetworks == ["127.0.0.0/8", "192.0.2.0/24"]


def test_mynetworks_with_nothing_left_returns_to_its_default(old_database: Engine) -> None:
    with old_database.begin() as connection:
        connection.execute(
            text("UPDATE settings SET value = :v WHERE name = 'mynetworks'"),
            {"v": json.dumps(["0.0.0.0/0"])},
        )
    _migrate(old_database, "upgrade", REVISION)
    assert _rows(old_database, "SELECT value FROM settings WHERE name = 'mynetworks'") == []


def test_downgrade_restores_name_scopes(old_database: Engine) -> None:
    _migrate(old_database, "upgrade", REVISION)
    _migrate(old_database, "downgrade", BEFORE)
    assert sorted(_rows(old_database, "SELECT token_id, domain FROM api_token_domains")) == [
        (10, "backup.example"),
        (10, "shop.example"),
    ]
    assert "api_token_relay_domains" not in inspect(old_database).get_table_names()
    columns = {column["name"] for column in inspect(old_database).get_columns("api_tokens")}
    assert not {"expires_at", "networks", "last_used_from"} & columns
    assert len(_rows(old_database, "SELECT id FROM api_tokens")) == 3
    # And up again.
    _migrate(old_database, "upgrade", REVISION)
    assert _rows(old_database, "SELECT token_id, domain_id FROM api_token_domains") == [(10, 1)]
