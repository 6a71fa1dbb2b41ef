"""Alembic environment: always runs on a connection the service passes in (see
`gateway.migrate`), never opens its own, so it works inside a running event loop."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `gateway migrate`, which passes a connection")
context.configure(connection=connection, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
