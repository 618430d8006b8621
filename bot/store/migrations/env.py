"""Alembic environment: migrations run on a connection the application passes in
(``bot.store.engine.migrate``), against SQLite or PostgreSQL alike."""

from alembic import context

from bot.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `receptionist db upgrade` (needs a live connection)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
