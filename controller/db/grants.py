"""Least-privilege grants for the users the mail daemons reach the database with.

The db container creates the users; grants follow the schema, so they are (re)applied
after every migration. Postfix never gets the password hashes and writes nothing;
Dovecot reads mail data and writes only its failed-login counts (login_blocks, its auth
policy server). Amavis reads its policy view and writes only its own quarantine tables;
OpenDKIM reads its signing views.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

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
    # Whether spam is filed into Junk (the userdb query names the Sieve before-script).
    "domain_filter_policies": ("domain_id", "spam_to_junk"),
}

AMAVIS_USER = "mailyard_amavis"
OPENDKIM_USER = "mailyard_opendkim"
# Whole-table privileges, for users that need more than column-wise SELECT:
# user -> table or view -> privileges (a subset of TABLE_PRIVILEGES).
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
PRIVILEGE_GRANTS: dict[str, dict[str, tuple[str, ...]]] = {
    # Amavis reads its per-domain policy and keeps its SQL quarantine
    # (docs/design/filter-chain.md); it sees no other table.
    AMAVIS_USER: {
        "amavis_policy": ("SELECT",),
        "maddr": TABLE_PRIVILEGES,
        "msgs": TABLE_PRIVILEGES,
        "msgrcpt": TABLE_PRIVILEGES,
        "quarantine": TABLE_PRIVILEGES,
    },
    # OpenDKIM reads its signing and key tables live (views of dkim_keys, migration
    # 0004); the private keys themselves are files, never in the database.
    OPENDKIM_USER: {
        "dkim_signing_table": ("SELECT",),
        "dkim_signing_table_ed25519": ("SELECT",),
        "dkim_key_table": ("SELECT",),
    },
    # Dovecot's auth policy server (images/dovecot/auth_policy.py) counts failed logins
    # per client address and blocks it (migration 0006); it writes nothing else.
    DOVECOT_USER: {
        "login_blocks": TABLE_PRIVILEGES,
    },
}


def _privileges(user: str, table: str, privileges: tuple[str, ...]) -> str:
    unknown = [name for name in privileges if name not in TABLE_PRIVILEGES]
    if unknown or not privileges:
        raise ValueError(f"grant for {user} on {table}: unknown privileges {unknown}")
    return ", ".join(name for name in TABLE_PRIVILEGES if name in privileges)


def grant_statements(database: str) -> list[str]:
    """The GRANT statements; names are constants of this module, never user input."""
    statements: list[str] = []
    for user, grants in ((POSTFIX_USER, POSTFIX_GRANTS), (DOVECOT_USER, DOVECOT_GRANTS)):
        for table, columns in grants.items():
            what = "SELECT" if columns is None else f"SELECT ({', '.join(columns)})"
            statements.append(f"GRANT {what} ON `{database}`.`{table}` TO '{user}'@'%'")
    for user, tables in PRIVILEGE_GRANTS.items():
        for table, privileges in tables.items():
            what = _privileges(user, table, privileges)
            statements.append(f"GRANT {what} ON `{database}`.`{table}` TO '{user}'@'%'")
    return statements


def apply_service_grants(engine: Engine, database: str) -> None:
    """Grant the read-only service users exactly what their queries need (MariaDB only)."""
    if engine.dialect.name != "mysql":
        return
    with engine.begin() as connection:
        for statement in grant_statements(database):
            connection.execute(text(statement))


MAILMAN_DATABASE = "mailman"
# Postfix routes list addresses by these two columns of Mailman's own table.
MAILMAN_ROUTING_COLUMNS = ("list_name", "mail_host")


def grant_mailman_routing(connection: Connection) -> bool:
    """Let Postfix read the columns it routes list mail by, once Mailman has created its
    table (Mailman makes its schema at its first start, so this cannot be part of the
    database's init). Returns whether Postfix may now use the list lookup. MariaDB only."""
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
        text(
            f"GRANT SELECT ({columns}) ON `{MAILMAN_DATABASE}`.`mailinglist` "
            f"TO '{POSTFIX_USER}'@'%'"
        )
    )
    return True
