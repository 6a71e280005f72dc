"""Least-privilege grants for the accounts the mail daemons reach the database with.

Each managed service declares its own account (`DatabaseAccess`, in
controller/services/<name>.py); the db container creates the users
(images/db/entrypoint.sh, for every name in MAILYARD_DB_SERVICE_USERS), and the grants
follow the schema, so they are (re)applied after every migration. What each service may
read or write is written next to its declaration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text

# Whole-table privileges a service may be given (a subset, in this order).
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


@dataclass(frozen=True)
class DatabaseAccess:
    """A service's own database account and exactly what it may do."""

    service: str  # user mailyard_<service>, password file db-<service>-password
    # table -> the columns it may SELECT (None: the whole row)
    columns: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)
    # table or view -> whole-table privileges (from TABLE_PRIVILEGES)
    tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return f"mailyard_{self.service}"

    @property
    def password_file(self) -> str:
        return f"db-{self.service}-password"


def _privileges(user: str, table: str, privileges: tuple[str, ...]) -> str:
    unknown = [name for name in privileges if name not in TABLE_PRIVILEGES]
    if unknown or not privileges:
        raise ValueError(f"grant for {user} on {table}: unknown privileges {unknown}")
    return ", ".join(name for name in TABLE_PRIVILEGES if name in privileges)


def grant_statements(database: str, accounts: Iterable[DatabaseAccess]) -> list[str]:
    """The GRANT statements; names are constants of the service modules, never user
    input."""
    statements: list[str] = []
    for account in accounts:
        for table, columns in account.columns.items():
            what = "SELECT" if columns is None else f"SELECT ({', '.join(columns)})"
            statements.append(f"GRANT {what} ON `{database}`.`{table}` TO '{account.user}'@'%'")
        for table, privileges in account.tables.items():
            what = _privileges(account.user, table, privileges)
            statements.append(f"GRANT {what} ON `{database}`.`{table}` TO '{account.user}'@'%'")
    return statements


def apply_service_grants(engine: Engine, database: str, accounts: Iterable[DatabaseAccess]) -> None:
    """Grant the service accounts exactly what their queries need (MariaDB only)."""
    if engine.dialect.name != "mysql":
        return
    with engine.begin() as connection:
        for statement in grant_statements(database, accounts):
            connection.execute(text(statement))


MAILMAN_DATABASE = "mailman"
# Postfix routes list addresses by these two columns of Mailman's own table.
MAILMAN_ROUTING_COLUMNS = ("list_name", "mail_host")


def grant_mailman_routing(connection: Connection, user: str) -> bool:
    """Let `user` (Postfix's account) read the columns it routes list mail by, once
    Mailman has created its table (Mailman makes its schema at its first start, so this
    cannot be part of the database's init). Returns whether the lookup may now be used.
    MariaDB only."""
    if connection.dialect.name != "mysql":
        return False
    exists = connection.execute(
        text(
            "SELECT COUNT(*) FROM information_schema.tables "
            "WHERE table_schema = :schema AND table_name = 'mailinglist'"
        ),
        {"schema": MAILMAN_DATABASE},
    ).scalar()
    if not exists:
        return False
    columns = ", ".join(MAILMAN_ROUTING_COLUMNS)
    connection.execute(
        text(f"GRANT SELECT ({columns}) ON `{MAILMAN_DATABASE}`.`mailinglist` TO '{user}'@'%'")
    )
    return True
