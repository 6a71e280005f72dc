"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from controller.db.migrate import alembic_config, current_revision, head_revision, upgrade_to_head
from controller.db.models import Base
from controller.db.session import make_engine

TABLES = {
    "alembic_version",
    "alias_destinations",
    "alias_domains",
    "aliases",
    "api_token_domains",
    "api_token_relay_domains",
    "api_tokens",
    "config_applies",
    "dkim_keys",
    "domain_filter_policies",
    "domains",
    "login_blocks",
    "maddr",
    "msgrcpt",
    "msgs",
    "quarantine",
    "mailboxes",
    "relay_domains",
    "settings",
    "system_state",
}


@pytest.fixture
def fresh_engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'fresh.sqlite'}")


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": False}
        )
        return list(compare_metadata(context, Base.metadata))


def test_migrations_match_the_models(fresh_engine: Engine) -> None:
    upgrade_to_head(fresh_engine)
    assert _differences(fresh_engine) == []


def test_an_empty_database_differs_from_the_models(fresh_engine: Engine) -> None:
    # The comparison above is only meaningful if it can find differences at all.
    differences = _differences(fresh_engine)
    added = {diff[1].name for diff in differences if diff[0] == "add_table"}
    assert added == TABLES - {"alembic_version"}


def test_upgrade_reaches_head_and_is_idempotent(fresh_engine: Engine) -> None:
    assert current_revision(fresh_engine) is None
    upgrade_to_head(fresh_engine)
    assert head_revision() is not None
    assert current_revision(fresh_engine) == head_revision()
    upgrade_to_head(fresh_engine)
    assert current_revision(fresh_engine) == head_revision()
    assert set(inspect(fresh_engine).get_table_names()) == TABLES


def test_downgrade_to_base_and_up_again(fresh_engine: Engine) -> None:
    upgrade_to_head(fresh_engine)
    config = alembic_config()
    with fresh_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(fresh_engine).get_table_names()) <= {"alembic_version"}
    upgrade_to_head(fresh_engine)
    assert _differences(fresh_engine) == []


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    # `engine` comes from conftest: the migrated database, as the API uses it.
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO mailboxes (domain_id, local_part, address, password_hash, "
                "quota_mb, active, maildir, created_at, updated_at) VALUES (999, 'a', "
                "'a@nowhere.example', 'x', 0, 1, 'nowhere/a', '2026-01-01', '2026-01-01')"
            )
        )


def test_deleting_an_alias_row_deletes_its_destinations(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO domains (id, name, created_at, updated_at) "
                "VALUES (1, 'example.org', '2026-01-01', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO aliases (id, domain_id, address, created_at, updated_at) "
                "VALUES (1, 1, 'team@example.org', '2026-01-01', '2026-01-01')"
            )
        )
        connection.execute(
            text("INSERT INTO alias_destinations (alias_id, address) VALUES (1, 'x@y.example')")
        )
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM aliases WHERE id = 1"))
        assert connection.scalar(text("SELECT COUNT(*) FROM alias_destinations")) == 0
    # A domain with a mailbox cannot be deleted behind the controller's back.
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO mailboxes (domain_id, local_part, address, password_hash, "
                "maildir, created_at, updated_at) VALUES (1, 'a', 'a@example.org', 'x', "
                "'example.org/a', '2026-01-01', '2026-01-01')"
            )
        )
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("DELETE FROM domains WHERE id = 1"))
