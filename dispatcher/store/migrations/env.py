"""Alembic environment: migrations run programmatically on the connection the dispatcher passes in."""

from __future__ import annotations

from alembic import context

from dispatcher.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the dispatcher runs these migrations
    raise RuntimeError("run migrations through dispatcher.store.engine.migrate()")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
