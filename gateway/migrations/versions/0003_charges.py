"""Charges, refunds and API idempotency keys.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The processor's idempotency key is a generated column derived from our charge id: it is
    # stored in the same INSERT that creates the row, before any processor call, and can never
    # change, so every retry and every recovery after a crash sends the same key.
    op.execute(
        """
        CREATE TABLE charges (
          id text PRIMARY KEY DEFAULT gw_new_id('ch'),
          account_id text NOT NULL,
          amount_minor bigint NOT NULL CHECK (amount_minor > 0),
          currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
          status text NOT NULL DEFAULT 'pending' CHECK (status IN
            ('pending', 'requires_action', 'succeeded', 'failed', 'refunded', 'disputed')),
          provider text NOT NULL,
          provider_charge_id text,
          provider_idempotency_key text GENERATED ALWAYS AS ('gw_' || id) STORED NOT NULL,
          payment_method text NOT NULL,
          amount_refunded_minor bigint NOT NULL DEFAULT 0,
          dispute_id text,
          dispute_status text CHECK (dispute_status IN ('open', 'won', 'lost')),
          amount_disputed_minor bigint NOT NULL DEFAULT 0 CHECK (amount_disputed_minor >= 0),
          failure_code text,
          failure_message text,
          description text,
          metadata jsonb NOT NULL DEFAULT '{}',
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT charges_provider_idempotency_key_unique UNIQUE (provider_idempotency_key),
          CONSTRAINT charges_refunded_within_amount
            CHECK (amount_refunded_minor BETWEEN 0 AND amount_minor)
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX charges_provider_charge ON charges (provider, provider_charge_id) "
        "WHERE provider_charge_id IS NOT NULL"
    )
    # Statement pages: newest first, id breaks ties, so `starting_after` is a stable cursor.
    op.execute(
        "CREATE INDEX charges_account_page ON charges (account_id, created_at DESC, id DESC)"
    )
    # The completer's work list stays tiny: only charges still waiting for an answer.
    op.execute(
        "CREATE INDEX charges_unresolved ON charges (updated_at) "
        "WHERE status IN ('pending', 'requires_action')"
    )
    op.execute(
        """
        CREATE TABLE refunds (
          id text PRIMARY KEY DEFAULT gw_new_id('re'),
          charge_id text NOT NULL REFERENCES charges (id),
          amount_minor bigint NOT NULL CHECK (amount_minor > 0),
          currency text NOT NULL,
          status text NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'succeeded', 'failed')),
          provider_refund_id text,
          provider_idempotency_key text GENERATED ALWAYS AS ('gw_' || id) STORED NOT NULL,
          failure_message text,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT refunds_provider_idempotency_key_unique UNIQUE (provider_idempotency_key)
        )
        """
    )
    op.execute("CREATE INDEX refunds_charge ON refunds (charge_id)")
    # One row per (API key, Idempotency-Key). `fingerprint` is a hash of method, route and the
    # canonical body; `locked_at` is set while a request owns the key (stale locks are taken
    # over); `recovery_point` names the last committed phase; the response is stored as the
    # exact bytes sent, so a replay is byte for byte.
    op.execute(
        """
        CREATE TABLE idempotency_keys (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          scope text NOT NULL,
          key text NOT NULL,
          request_method text NOT NULL,
          request_path text NOT NULL,
          fingerprint bytea NOT NULL,
          locked_at timestamptz,
          recovery_point text NOT NULL DEFAULT 'started'
            CHECK (recovery_point IN ('started', 'charge_created', 'refund_created', 'finished')),
          charge_id text REFERENCES charges (id) ON DELETE CASCADE,
          refund_id text REFERENCES refunds (id) ON DELETE CASCADE,
          response_status integer,
          response_body bytea,
          response_headers jsonb,
          created_at timestamptz NOT NULL DEFAULT now(),
          last_run_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT idempotency_keys_scope_key UNIQUE (scope, key),
          CONSTRAINT idempotency_keys_finished_has_response
            CHECK ((recovery_point = 'finished') = (response_status IS NOT NULL))
        )
        """
    )
    op.execute("CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)")
    # Deleting an abandoned charge or refund cascades to its key: find it without a scan.
    op.execute("CREATE INDEX idempotency_keys_charge ON idempotency_keys (charge_id)")
    op.execute("CREATE INDEX idempotency_keys_refund ON idempotency_keys (refund_id)")
    op.execute(
        "CREATE INDEX idempotency_keys_unfinished ON idempotency_keys (last_run_at) "
        "WHERE response_status IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE idempotency_keys")
    op.execute("DROP TABLE refunds")
    op.execute("DROP TABLE charges")
