"""Least-privilege grants for the users Postfix and Dovecot read the database with.

The db container creates the users; grants follow the schema, so they are (re)applied
after every migration. Postfix never gets the password hashes; neither service can write.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

POSTFIX_USER = "mailyard_postfix"
DOVECOT_USER = "mailyard_dovecot"

# table -> columns (None = whole table)
POSTFIX_GRANTS: dict[str, tuple[str, ...] | None] = {
    "domains": ("id", "name", "active"),
    "mailboxes": ("id", "domain_id", "address", "active"),
    "aliases": ("id", "domain_id", "address", "active"),
    "alias_destinations": ("alias_id", "address"),
    "alias_domains": ("id", "name", "target_domain_id", "active"),
    "relay_domains": ("id", "name", "nexthop", "active"),
}
DOVECOT_GRANTS: dict[str, tuple[str, ...] | None] = {
    "domains": ("id", "name", "active"),
    "mailboxes": (
        "id",
        "domain_id",
        "address",
        "password_hash",
        "quota_mb",
        "active",
        "maildir",
    ),
}


def grant_statements(database: str) -> list[str]:
    """The GRANT statements; names are constants of this module, never user input."""
    statements: list[str] = []
    for user, grants in ((POSTFIX_USER, POSTFIX_GRANTS), (DOVECOT_USER, DOVECOT_GRANTS)):
        for table, columns in grants.items():
            what = "SELECT" if columns is None else f"SELECT ({', '.join(columns)})"
            statements.append(f"GRANT {what} ON `{database}`.`{table}` TO '{user}'@'%'")
    return statements


def apply_service_grants(engine: Engine, database: str) -> None:
    """Grant the read-only service users exactly what their queries need (MariaDB only)."""
    if engine.dialect.name != "mysql":
        return
    with engine.begin() as connection:
        for statement in grant_statements(database):
            connection.execute(text(statement))
