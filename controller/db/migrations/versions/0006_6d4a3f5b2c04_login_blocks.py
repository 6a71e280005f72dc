"""login blocks: failed logins per client address, written by Dovecot's auth policy server

Revision ID: 6d4a3f5b2c04
Revises: 5c3f2e4a1b03
Create Date: 2026-12-01 10:00:00.000000

The policy server in the Dovecot container (images/dovecot/auth_policy.py) counts failed
logins per client address here and blocks an address for a while; the controller lists
and lifts blocks (GET/DELETE /api/v1/blocks). The `mailyard_dovecot` database user gets
SELECT, INSERT, UPDATE and DELETE on this table only (controller/db/grants.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6d4a3f5b2c04"
down_revision: str | None = "5c3f2e4a1b03"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_blocks",
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("window_started_at", sa.DateTime(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(), nullable=False),
        sa.Column("blocked_at", sa.DateTime(), nullable=True),
        sa.Column("blocked_until", sa.DateTime(), nullable=True),
        sa.Column("last_username", sa.String(length=64), server_default="", nullable=False),
        sa.Column("last_protocol", sa.String(length=16), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_login_blocks")),
    )
    op.create_index(
        op.f("ix_login_blocks_last_failure_at"), "login_blocks", ["last_failure_at"], unique=False
    )
    op.create_index(
        op.f("ix_login_blocks_blocked_until"), "login_blocks", ["blocked_until"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_login_blocks_blocked_until"), table_name="login_blocks")
    op.drop_index(op.f("ix_login_blocks_last_failure_at"), table_name="login_blocks")
    op.drop_table("login_blocks")
