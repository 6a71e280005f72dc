"""filter policies and quarantine: domain_filter_policies, view amavis_policy, Amavis's
storage tables (maddr, msgs, msgrcpt, quarantine)

The contract is docs/design/filter-chain.md. Amavis's tables follow the MySQL layout of
amavisd-new's README.sql-mysql (octet strings as VARBINARY/BLOB, unsigned counters), so
amavisd-new 2.13 can store its SQL quarantine in them unchanged. Index names follow this
project's naming convention; Amavis never refers to them.

Revision ID: 3a1f0c2d9e01
Revises: 066f2c7037c5
Create Date: 2026-11-22 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "3a1f0c2d9e01"
down_revision: str | None = "066f2c7037c5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNSIGNED_INT = sa.Integer().with_variant(mysql.INTEGER(unsigned=True), "mysql", "mariadb")
_UNSIGNED_BIGINT = sa.BigInteger().with_variant(mysql.BIGINT(unsigned=True), "mysql", "mariadb")
_MADDR_ID = (
    sa.BigInteger()
    .with_variant(mysql.BIGINT(unsigned=True), "mysql", "mariadb")
    .with_variant(sa.Integer(), "sqlite")
)


def _octets(length: int) -> sa.types.TypeEngine[bytes]:
    # SQLite (unit tests) has no VARBINARY; BLOB keeps the same bytes semantics.
    return sa.VARBINARY(length=length).with_variant(sa.LargeBinary(), "sqlite")


# What Amavis's $sql_select_policy reads: one row per active domain, the defaults of the
# contract where a domain has no policy row. `email_key` is the only part that differs
# between MariaDB (CONCAT) and SQLite (||, used by the unit tests).
_VIEW_SQL = """CREATE VIEW amavis_policy AS
SELECT
  {email_key} AS email,
  5 AS priority,
  'Y' AS {local_column},
  d.id AS id,
  CASE WHEN p.spam_action = 'deliver' THEN 'Y' ELSE 'N' END AS spam_lover,
  'N' AS virus_lover,
  'N' AS banned_files_lover,
  -999 AS spam_tag_level,
  COALESCE(p.spam_tag_score, 5.0) AS spam_tag2_level,
  COALESCE(p.spam_action_score, 12.0) AS spam_kill_level,
  CASE WHEN p.spam_action = 'reject' THEN 9999 ELSE 0 END AS spam_dsn_cutoff_level,
  CASE WHEN COALESCE(p.spam_action, 'quarantine') = 'quarantine'
       THEN 'spam-quarantine' ELSE '' END AS spam_quarantine_to,
  CASE WHEN COALESCE(p.virus_action, 'quarantine') = 'quarantine'
       THEN 'virus-quarantine' ELSE '' END AS virus_quarantine_to,
  CASE WHEN COALESCE(p.virus_action, 'quarantine') = 'quarantine'
       THEN 'banned-quarantine' ELSE '' END AS banned_quarantine_to,
  COALESCE(p.banned_categories, 'executables') AS banned_rulenames
FROM domains d
LEFT JOIN domain_filter_policies p ON p.domain_id = d.id
WHERE d.active = 1"""


def view_sql(dialect_name: str) -> str:
    """The CREATE VIEW statement for `dialect_name` ("mysql"/"mariadb" or "sqlite")."""
    if dialect_name in ("mysql", "mariadb"):
        return _VIEW_SQL.format(email_key="CONCAT('@', d.name)", local_column="`local`")
    return _VIEW_SQL.format(email_key="'@' || d.name", local_column='"local"')


def upgrade() -> None:
    op.create_table(
        "domain_filter_policies",
        sa.Column("domain_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("spam_tag_score", sa.Float(), server_default="5", nullable=False),
        sa.Column("spam_action_score", sa.Float(), server_default="12", nullable=False),
        sa.Column("spam_action", sa.String(length=16), server_default="quarantine", nullable=False),
        sa.Column(
            "virus_action", sa.String(length=16), server_default="quarantine", nullable=False
        ),
        sa.Column(
            "banned_categories",
            sa.String(length=255),
            server_default="executables",
            nullable=False,
        ),
        sa.Column("spam_to_junk", sa.Boolean(), server_default=sa.text("1"), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "spam_action IN ('quarantine', 'reject', 'deliver')",
            name="ck_domain_filter_policies_spam_action",
        ),
        sa.CheckConstraint(
            "virus_action IN ('quarantine', 'reject')",
            name="ck_domain_filter_policies_virus_action",
        ),
        sa.CheckConstraint(
            "spam_action_score >= spam_tag_score",
            name="ck_domain_filter_policies_score_order",
        ),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_domain_filter_policies_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("domain_id", name=op.f("pk_domain_filter_policies")),
    )
    op.create_table(
        "maddr",
        sa.Column("partition_tag", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", _MADDR_ID, autoincrement=True, nullable=False),
        sa.Column("email", _octets(255), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maddr")),
        sa.UniqueConstraint("partition_tag", "email", name=op.f("uq_maddr_partition_tag")),
    )
    op.create_table(
        "msgs",
        sa.Column(
            "partition_tag", sa.Integer(), server_default="0", autoincrement=False, nullable=False
        ),
        sa.Column("mail_id", _octets(16), nullable=False),
        sa.Column("secret_id", _octets(16), server_default="", nullable=True),
        sa.Column("am_id", sa.String(length=20), nullable=False),
        sa.Column("time_num", _UNSIGNED_INT, nullable=False),
        sa.Column("time_iso", sa.CHAR(length=16), nullable=False),
        sa.Column("sid", _UNSIGNED_BIGINT, nullable=False),
        sa.Column("policy", sa.String(length=255), server_default="", nullable=True),
        sa.Column("client_addr", sa.String(length=255), server_default="", nullable=True),
        sa.Column("size", _UNSIGNED_INT, nullable=False),
        sa.Column("originating", sa.CHAR(length=1), server_default=" ", nullable=False),
        sa.Column("content", sa.CHAR(length=1), nullable=True),
        sa.Column("quar_type", sa.CHAR(length=1), nullable=True),
        sa.Column("quar_loc", _octets(255), server_default="", nullable=True),
        sa.Column("dsn_sent", sa.CHAR(length=1), nullable=True),
        sa.Column("spam_level", sa.Float(), nullable=True),
        sa.Column("message_id", sa.String(length=255), server_default="", nullable=True),
        sa.Column("from_addr", sa.String(length=255), server_default="", nullable=True),
        sa.Column("subject", sa.String(length=255), server_default="", nullable=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("partition_tag", "mail_id", name=op.f("pk_msgs")),
    )
    with op.batch_alter_table("msgs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_msgs_message_id"), ["message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_msgs_sid"), ["sid"], unique=False)
        batch_op.create_index(batch_op.f("ix_msgs_time_num"), ["time_num"], unique=False)
    op.create_table(
        "msgrcpt",
        sa.Column(
            "partition_tag", sa.Integer(), server_default="0", autoincrement=False, nullable=False
        ),
        sa.Column("mail_id", _octets(16), nullable=False),
        sa.Column("rseqnum", sa.Integer(), server_default="0", autoincrement=False, nullable=False),
        sa.Column("rid", _UNSIGNED_BIGINT, nullable=False),
        sa.Column("is_local", sa.CHAR(length=1), server_default=" ", nullable=False),
        sa.Column("content", sa.CHAR(length=1), server_default=" ", nullable=False),
        sa.Column("ds", sa.CHAR(length=1), nullable=False),
        sa.Column("rs", sa.CHAR(length=1), nullable=False),
        sa.Column("bl", sa.CHAR(length=1), server_default=" ", nullable=True),
        sa.Column("wl", sa.CHAR(length=1), server_default=" ", nullable=True),
        sa.Column("bspam_level", sa.Float(), nullable=True),
        sa.Column("smtp_resp", sa.String(length=255), server_default="", nullable=True),
        sa.PrimaryKeyConstraint("partition_tag", "mail_id", "rseqnum", name=op.f("pk_msgrcpt")),
    )
    with op.batch_alter_table("msgrcpt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_msgrcpt_mail_id"), ["mail_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_msgrcpt_rid"), ["rid"], unique=False)
    op.create_table(
        "quarantine",
        sa.Column(
            "partition_tag", sa.Integer(), server_default="0", autoincrement=False, nullable=False
        ),
        sa.Column("mail_id", _octets(16), nullable=False),
        sa.Column("chunk_ind", _UNSIGNED_INT, autoincrement=False, nullable=False),
        sa.Column("mail_text", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(
            "partition_tag", "mail_id", "chunk_ind", name=op.f("pk_quarantine")
        ),
    )
    op.execute(view_sql(op.get_bind().dialect.name))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS amavis_policy")
    op.drop_table("quarantine")
    with op.batch_alter_table("msgrcpt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_msgrcpt_rid"))
        batch_op.drop_index(batch_op.f("ix_msgrcpt_mail_id"))
    op.drop_table("msgrcpt")
    with op.batch_alter_table("msgs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_msgs_time_num"))
        batch_op.drop_index(batch_op.f("ix_msgs_sid"))
        batch_op.drop_index(batch_op.f("ix_msgs_message_id"))
    op.drop_table("msgs")
    op.drop_table("maddr")
    op.drop_table("domain_filter_policies")
