"""Auto-recharge: per-account settings and state, and one row per recharge attempt.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per account with auto-recharge configured: the settings (from PUT) and the
    # decline state machine. Deciders lock this row FOR UPDATE, so every decision for one
    # account is made on fresh state, one at a time, in a short transaction with no network
    # call inside. `crossings` numbers the attempts: the next attempt is crossing + 1, and
    # its idempotency key is derived from that number.
    op.execute(
        """
        CREATE TABLE account_recharge (
          account_id text PRIMARY KEY REFERENCES customer_accounts (account_id),
          currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
          threshold_micros bigint NOT NULL,
          amount_minor bigint NOT NULL CHECK (amount_minor > 0),
          payment_method text NOT NULL,
          provider text,
          crossings bigint NOT NULL DEFAULT 0 CHECK (crossings >= 0),
          consecutive_declines integer NOT NULL DEFAULT 0 CHECK (consecutive_declines >= 0),
          cooldown_until timestamptz,
          paused_reason text,
          paused_at timestamptz,
          updated_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT account_recharge_paused_has_time
            CHECK ((paused_reason IS NULL) = (paused_at IS NULL))
        )
        """
    )
    # Attempts are never deleted: they are the audit trail of every top-up decision that
    # moved (or tried to move) money. The charge goes through the ordinary charge path under
    # `idempotency_key`, so a crash between this row and the charge resumes with the same key.
    op.execute(
        """
        CREATE TABLE recharge_attempts (
          id text PRIMARY KEY DEFAULT gw_new_id('rch'),
          account_id text NOT NULL REFERENCES customer_accounts (account_id),
          crossing bigint NOT NULL CHECK (crossing > 0),
          idempotency_key text NOT NULL,
          status text NOT NULL DEFAULT 'open'
            CHECK (status IN ('open', 'succeeded', 'failed', 'requires_action')),
          amount_minor bigint NOT NULL CHECK (amount_minor > 0),
          amount_micros bigint NOT NULL CHECK (amount_micros > 0),
          currency text NOT NULL,
          payment_method text NOT NULL,
          provider text,
          charge_id text,
          lock_token bigint,
          failure_code text,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT recharge_attempts_crossing UNIQUE (account_id, crossing),
          CONSTRAINT recharge_attempts_idempotency_key UNIQUE (idempotency_key)
        )
        """
    )
    # The guarantee: at most one open recharge per account, whatever Redis says. An insert
    # that would open a second one fails, so nothing is charged on a lock that was lost.
    op.execute(
        "CREATE UNIQUE INDEX recharge_attempts_one_open ON recharge_attempts (account_id) "
        "WHERE status = 'open'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE recharge_attempts")
    op.execute("DROP TABLE account_recharge")
