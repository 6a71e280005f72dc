"""dkim keys, and the views OpenDKIM reads its SigningTable and KeyTable from

Revision ID: 4b2e1d3f0a02
Revises: 3a1f0c2d9e01
Create Date: 2026-11-22 10:00:00.000000

OpenDKIM (images/opendkim) reads these views live through OpenDBX (`dsn:mysql://...`),
so a new domain or an activated key signs from the next message on, with no reload:
- `dkim_signing_table`: author (the From domain) -> key_id, active RSA keys of active
  domains (the instance on port 8891); `dkim_signing_table_ed25519`: the same for
  Ed25519 keys (the instance on port 8892);
- `dkim_key_table`: key_id -> domain_name, selector, key_path (the private key file as
  the opendkim container sees it: volume `dkim` at /var/lib/mailyard-dkim).
The `mailyard_opendkim` database user gets SELECT on these three views only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4b2e1d3f0a02"
down_revision: str | None = "3a1f0c2d9e01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The private key file as the opendkim container sees it: volume `dkim` at
# /var/lib/mailyard-dkim (docs/design/filter-chain.md). MariaDB treats || as OR unless
# PIPES_AS_CONCAT is set and SQLite has no CONCAT before 3.44, hence one text per
# dialect. The parts are validated names (A-labels, selectors [a-z0-9-]): no quoting.
_KEY_TABLE_VIEW = {
    "mysql": (
        "CREATE VIEW dkim_key_table AS "
        "SELECT k.id AS key_id, d.name AS domain_name, k.selector AS selector, "
        "CONCAT('/var/lib/mailyard-dkim/', d.name, '/', k.selector, '.key') AS key_path "
        "FROM dkim_keys k JOIN domains d ON d.id = k.domain_id "
        "WHERE k.state = 'active'"
    ),
    "sqlite": (
        "CREATE VIEW dkim_key_table AS "
        "SELECT k.id AS key_id, d.name AS domain_name, k.selector AS selector, "
        "'/var/lib/mailyard-dkim/' || d.name || '/' || k.selector || '.key' AS key_path "
        "FROM dkim_keys k JOIN domains d ON d.id = k.domain_id "
        "WHERE k.state = 'active'"
    ),
}


def upgrade() -> None:
    op.create_table(
        "dkim_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("selector", sa.String(length=63), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("activated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_dkim_keys_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dkim_keys")),
        sa.UniqueConstraint("domain_id", "selector", name=op.f("uq_dkim_keys_domain_id")),
    )
    # Debian's OpenDKIM 2.11 has one SignatureAlgorithm per process, so RSA and Ed25519
    # keys are served by two instances (ports 8891 and 8892), each with its own
    # SigningTable; a domain with an active key of each kind gets both signatures.
    op.execute(
        "CREATE VIEW dkim_signing_table AS "
        "SELECT d.name AS author, k.id AS key_id "
        "FROM dkim_keys k JOIN domains d ON d.id = k.domain_id "
        "WHERE k.state = 'active' AND d.active = 1 AND k.algorithm <> 'ed25519'"
    )
    op.execute(
        "CREATE VIEW dkim_signing_table_ed25519 AS "
        "SELECT d.name AS author, k.id AS key_id "
        "FROM dkim_keys k JOIN domains d ON d.id = k.domain_id "
        "WHERE k.state = 'active' AND d.active = 1 AND k.algorithm = 'ed25519'"
    )
    op.execute(_KEY_TABLE_VIEW[op.get_bind().dialect.name])


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS dkim_key_table")
    op.execute("DROP VIEW IF EXISTS dkim_signing_table_ed25519")
    op.execute("DROP VIEW IF EXISTS dkim_signing_table")
    op.drop_table("dkim_keys")
