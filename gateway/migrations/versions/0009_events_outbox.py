"""Events out: the endpoints internal callers register, the outbox of events written with the
changes they report, one delivery per (event, endpoint) and every attempt made.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

# The revision chain, in one place.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _endpoints()
    _outbox()
    _deliveries()
    # Whether the balance was below the auto-recharge threshold when last looked at under the
    # account's lock: `account.balance_below_threshold` is written when it turns true.
    op.execute(
        "ALTER TABLE account_recharge ADD COLUMN below_threshold boolean NOT NULL DEFAULT false"
    )


def _endpoints() -> None:
    # The secrets sign deliveries, so they are kept as they are (never logged, shown only when
    # made). `previous_secret` signs too until it expires: a rotation's overlap.
    # `failing_since` is the first failed attempt since the last delivery that worked: an
    # endpoint failing for the whole retry window is disabled with a reason.
    op.execute(
        """
        CREATE TABLE webhook_endpoints (
          id text PRIMARY KEY DEFAULT gw_new_id('we'),
          url text NOT NULL,
          description text,
          enabled_events text[] NOT NULL CHECK (cardinality(enabled_events) > 0),
          enabled boolean NOT NULL DEFAULT true,
          disabled_reason text,
          secret text NOT NULL,
          previous_secret text,
          previous_secret_expires_at timestamptz,
          failing_since timestamptz,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def _outbox() -> None:
    # The outbox. A row is written in the transaction of the change it reports, so it exists
    # exactly when the change does. `seq` orders events; an object's events are written under
    # that object's row lock, so `seq` also grows with every change of one object: it is the
    # `object_version` consumers keep the newest by. `object` is the JSON text as the API
    # shows the object (json, not jsonb: the bytes signed are the bytes written).
    op.execute(
        """
        CREATE TABLE events (
          seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          id text NOT NULL UNIQUE DEFAULT gw_new_id('evt'),
          type text NOT NULL,
          object_id text NOT NULL,
          object json NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # `GET /v1/events?type=` and `?object_id=`, newest first.
    op.execute("CREATE INDEX events_type_seq ON events (type, seq)")
    op.execute("CREATE INDEX events_object_seq ON events (object_id, seq)")


def _deliveries() -> None:
    # The delivery queue: written with the event for every endpoint subscribed then. A
    # delivery is claimed by pushing `next_attempt_at` past the attempt's timeout (a lease):
    # a worker that dies mid-attempt leaves it due again once the lease runs out, so every
    # event is delivered at least once. `queued_at` starts the retry window (the event's
    # creation, or a resend).
    op.execute(
        """
        CREATE TABLE event_deliveries (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          event_id text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
          endpoint_id text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
          status text NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'delivered', 'failed')),
          attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
          queued_at timestamptz NOT NULL DEFAULT now(),
          next_attempt_at timestamptz NOT NULL DEFAULT now(),
          delivered_at timestamptz,
          CONSTRAINT event_deliveries_once UNIQUE (event_id, endpoint_id)
        )
        """
    )
    # Claims read each endpoint's due deliveries in order; finished ones leave the index.
    op.execute(
        "CREATE INDEX event_deliveries_due ON event_deliveries (endpoint_id, next_attempt_at) "
        "WHERE status = 'pending'"
    )
    op.execute(
        """
        CREATE TABLE event_delivery_attempts (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          delivery_id bigint NOT NULL REFERENCES event_deliveries (id) ON DELETE CASCADE,
          attempted_at timestamptz NOT NULL,
          status_code integer,
          error text,
          latency_ms integer NOT NULL,
          response_excerpt text
        )
        """
    )
    op.execute(
        "CREATE INDEX event_delivery_attempts_delivery ON event_delivery_attempts (delivery_id)"
    )
    # Wake the delivery workers (in any process) when deliveries are queued: one notification
    # per statement, folded into one per transaction.
    op.execute(
        """
        CREATE FUNCTION event_deliveries_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('event_deliveries', '');
          RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER event_deliveries_queued AFTER INSERT ON event_deliveries "
        "FOR EACH STATEMENT EXECUTE FUNCTION event_deliveries_notify()"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE account_recharge DROP COLUMN below_threshold")
    op.execute("DROP TABLE event_delivery_attempts")
    op.execute("DROP TABLE event_deliveries")
    op.execute("DROP FUNCTION event_deliveries_notify()")
    op.execute("DROP TABLE events")
    op.execute("DROP TABLE webhook_endpoints")
