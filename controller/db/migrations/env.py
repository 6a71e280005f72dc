"""Alembic environment: runs on the connection handed over by controller.db.migrate."""

from __future__ import annotations

from alembic import context

from controller.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through `mailyard migrate` or scripts/new-migration, "
        "which pass a database connection"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
