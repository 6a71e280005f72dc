"""token scope bound to domain rows; token expiry, client networks, last use's address

Revision ID: 5c3f2e4a1b03
Revises: 4b2e1d3f0a02
Create Date: 2026-12-01 10:00:00.000000

Until now `api_token_domains` held domain *names*: a domain deleted and created again
under the same name (by someone else, e.g. a new customer of a hosting panel) fell back
into the scope of every token made for the old one. The scope now points at the row:
`api_token_domains.domain_id` -> `domains.id` and `api_token_relay_domains.relay_domain_id`
-> `relay_domains.id`, both ON DELETE CASCADE, so deleting a domain takes it out of every
token for good. Existing rows are converted by name; a name that matches no hosted or
relay domain today is dropped (the token was limited to something that does not exist,
so it loses nothing it could use; scopes only ever narrow).

`api_tokens` gains `expires_at` (NULL: never), `networks` (canonical CIDRs joined by
commas; empty: any client) and `last_used_from` (the client address of the last use).

The rows are read into memory before the old table is dropped: MariaDB commits every
DDL statement on its own, and names cannot be renamed in place into foreign keys. A
crash between the drop and the insert would leave tokens with an empty scope, i.e.
seeing nothing, never more. There are few rows (one per token and domain).

Stored settings that the controller now refuses are repaired here, or it could not even
read its settings after the upgrade (every value is validated when loaded):
- a `postscreen_dnsbl_sites` entry without a reply filter gets `=127.[0..254].[0..255].
  [0..255]`: every answer counts as listed as before, except the 127.255.x.x range in
  which lists report errors (e.g. a refused resolver), which used to list every client;
- a `mynetworks` entry shorter than /8 (0.0.0.0/0 and the like: an open relay) is
  removed; with none left the setting returns to its default (127.0.0.0/8).
The logic is copied, not imported, so this revision keeps doing what it did.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c3f2e4a1b03"
down_revision: str | None = "4b2e1d3f0a02"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BY_NAME = sa.table("api_token_domains", sa.column("token_id"), sa.column("domain"))
_DOMAINS = sa.table("domains", sa.column("id"), sa.column("name"))
_RELAYS = sa.table("relay_domains", sa.column("id"), sa.column("name"))
_SETTINGS = sa.table("settings", sa.column("name"), sa.column("value"))
_LISTED_NOT_ERROR = "=127.[0..254].[0..255].[0..255]"
_MIN_MYNETWORKS_PREFIX = 8


def _with_reply_filter(site: str) -> str:
    if not isinstance(site, str) or "=" in site:
        return site
    zone, star, weight = site.partition("*")
    return f"{zone}{_LISTED_NOT_ERROR}{star}{weight}"


def _not_an_open_relay(network: str) -> bool:
    try:
        parsed = ipaddress.ip_network(network.strip(), strict=False)
    except (ValueError, AttributeError):
        return True  # not ours to judge here; the settings check reports it
    return parsed.prefixlen >= _MIN_MYNETWORKS_PREFIX


def _repair_settings(bind: sa.Connection) -> None:
    rows = {
        row.name: json.loads(row.value)
        for row in bind.execute(
            sa.select(_SETTINGS.c.name, _SETTINGS.c.value).where(
                _SETTINGS.c.name.in_(["postscreen_dnsbl_sites", "mynetworks"])
            )
        )
    }
    sites = rows.get("postscreen_dnsbl_sites")
    if isinstance(sites, list):
        repaired = [_with_reply_filter(site) for site in sites]
        if repaired != sites:
            bind.execute(
                _SETTINGS.update()
                .where(_SETTINGS.c.name == "postscreen_dnsbl_sites")
                .values(value=json.dumps(repaired, sort_keys=True))
            )
    networks = rows.get("mynetworks")
    if isinstance(networks, list):
        kept = [network for network in networks if _not_an_open_relay(network)]
        if not kept:
            bind.execute(_SETTINGS.delete().where(_SETTINGS.c.name == "mynetworks"))
        elif kept != networks:
            bind.execute(
                _SETTINGS.update()
                .where(_SETTINGS.c.name == "mynetworks")
                .values(value=json.dumps(kept, sort_keys=True))
            )


def _scope_tables() -> tuple[sa.Table, sa.Table]:
    hosted = op.create_table(
        "api_token_domains",
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["api_tokens.id"],
            name=op.f("fk_api_token_domains_token_id_api_tokens"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_api_token_domains_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_id", "domain_id", name=op.f("pk_api_token_domains")),
    )
    relay = op.create_table(
        "api_token_relay_domains",
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("relay_domain_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["api_tokens.id"],
            name=op.f("fk_api_token_relay_domains_token_id_api_tokens"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["relay_domain_id"],
            ["relay_domains.id"],
            name=op.f("fk_api_token_relay_domains_relay_domain_id_relay_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "token_id", "relay_domain_id", name=op.f("pk_api_token_relay_domains")
        ),
    )
    return hosted, relay


def upgrade() -> None:
    bind = op.get_bind()
    hosted_rows = [
        {"token_id": row.token_id, "domain_id": row.id}
        for row in bind.execute(
            sa.select(_BY_NAME.c.token_id, _DOMAINS.c.id).join(
                _DOMAINS, _DOMAINS.c.name == _BY_NAME.c.domain
            )
        )
    ]
    relay_rows = [
        {"token_id": row.token_id, "relay_domain_id": row.id}
        for row in bind.execute(
            sa.select(_BY_NAME.c.token_id, _RELAYS.c.id).join(
                _RELAYS, _RELAYS.c.name == _BY_NAME.c.domain
            )
        )
    ]
    op.drop_table("api_token_domains")
    hosted, relay = _scope_tables()
    if hosted_rows:
        op.bulk_insert(hosted, hosted_rows)
    if relay_rows:
        op.bulk_insert(relay, relay_rows)
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("last_used_from", sa.String(length=45), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
        batch.add_column(
            sa.Column("networks", sa.String(length=2000), server_default="", nullable=False)
        )
    _repair_settings(bind)


def downgrade() -> None:
    bind = op.get_bind()
    hosted = sa.table("api_token_domains", sa.column("token_id"), sa.column("domain_id"))
    relay = sa.table("api_token_relay_domains", sa.column("token_id"), sa.column("relay_domain_id"))
    rows = [
        {"token_id": row.token_id, "domain": row.name}
        for row in bind.execute(
            sa.select(hosted.c.token_id, _DOMAINS.c.name).join(
                _DOMAINS, _DOMAINS.c.id == hosted.c.domain_id
            )
        )
    ]
    rows += [
        {"token_id": row.token_id, "domain": row.name}
        for row in bind.execute(
            sa.select(relay.c.token_id, _RELAYS.c.name).join(
                _RELAYS, _RELAYS.c.id == relay.c.relay_domain_id
            )
        )
    ]
    op.drop_table("api_token_relay_domains")
    op.drop_table("api_token_domains")
    # After the scope tables are gone: SQLite's batch mode copies api_tokens into a new
    # table and drops the old one, which would cascade into rows that point at it.
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("networks")
        batch.drop_column("expires_at")
        batch.drop_column("last_used_from")
    by_name = op.create_table(
        "api_token_domains",
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["api_tokens.id"],
            name=op.f("fk_api_token_domains_token_id_api_tokens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_id", "domain", name=op.f("pk_api_token_domains")),
    )
    if rows:
        op.bulk_insert(by_name, rows)
