"""Webhook inbox: every verified processor event, stored before it is acknowledged and
settled later by the webhook worker.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per (provider, processor event id): the unique key is the dedupe, so a
    # redelivery or a concurrent copy is acknowledged without a second row. The raw body and
    # headers are kept as received (untrusted evidence, as dj-stripe keeps them); `event` is
    # the provider's normalized reading of it, which is what the worker settles.
    #
    # A row is never committed as "processing": the worker claims rows with FOR UPDATE SKIP
    # LOCKED inside the very transaction that settles them, so a crash rolls the claim back
    # with the settlement and the row is simply pending again.
    op.execute(
        """
        CREATE TABLE webhook_events (
          id              text PRIMARY KEY DEFAULT gw_new_id('evt'),
          seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
          provider        text NOT NULL,
          event_id        text NOT NULL,
          kind            text NOT NULL,
          raw_type        text NOT NULL,
          event           jsonb NOT NULL,
          body            bytea NOT NULL,
          headers         jsonb NOT NULL,
          received_at     timestamptz NOT NULL DEFAULT now(),
          status          text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'settled', 'ignored', 'dead')),
          outcome         text,
          attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
          next_attempt_at timestamptz NOT NULL DEFAULT now(),
          last_error      text,
          settled_at      timestamptz,
          CONSTRAINT webhook_events_provider_event_id_key UNIQUE (provider, event_id)
        )
        """
    )
    # Claiming: only pending rows, oldest due first; stays small because settled rows leave it.
    op.execute(
        "CREATE INDEX webhook_events_due_idx ON webhook_events (next_attempt_at) "
        "WHERE status = 'pending'"
    )
    # Operators list by status, newest first.
    op.execute("CREATE INDEX webhook_events_status_seq_idx ON webhook_events (status, seq)")
    # Wake sleeping workers (in any process) when new events land. A statement-level trigger
    # costs one notification per insert statement, and PostgreSQL folds identical
    # notifications within a transaction into one.
    op.execute(
        """
        CREATE FUNCTION webhook_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('webhook_events', '');
          RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER webhook_events_inserted AFTER INSERT ON webhook_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE webhook_events")
    op.execute("DROP FUNCTION webhook_events_notify()")
