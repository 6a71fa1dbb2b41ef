"""Reconciliation runs, what they found and the processor records they read; the ledger
check's checkpoint; and the indexes both read by.

Revision ID: 0011
Revises: 0008
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_KINDS = (
    "missing_here",
    "missing_at_processor",
    "status_mismatch",
    "amount_mismatch",
    "currency_mismatch",
    "refund_missing_here",
    "dispute_missing_here",
    "posting_missing",
    "posting_extra",
    "posting_amount_mismatch",
)


def upgrade() -> None:
    _runs()
    _items()
    _records()
    _reading_indexes()
    _ledger_check()


def _runs() -> None:
    # A run over one provider and window. `phase` and `cursor` say where it is, committed with
    # the work of each page, so a run resumes where a crash left it. One run per provider is
    # running at a time (the partial unique index); the process executing it also holds a
    # session advisory lock on it, so a running run nobody holds is one to resume.
    op.execute(
        """
        CREATE TABLE reconciliation_runs (
          id text PRIMARY KEY DEFAULT gw_new_id('rr'),
          provider text NOT NULL,
          since timestamptz NOT NULL,
          until timestamptz NOT NULL,
          heal boolean NOT NULL,
          trigger text NOT NULL CHECK (trigger IN ('command', 'api', 'schedule')),
          status text NOT NULL DEFAULT 'running'
            CHECK (status IN ('running', 'finished', 'failed')),
          phase text NOT NULL DEFAULT 'fetch',
          cursor text,
          counts jsonb NOT NULL DEFAULT '{}',
          error text,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          finished_at timestamptz,
          CONSTRAINT reconciliation_runs_window CHECK (since < until)
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX reconciliation_runs_one_running ON reconciliation_runs (provider) "
        "WHERE status = 'running'"
    )
    op.execute(
        "CREATE INDEX reconciliation_runs_latest ON reconciliation_runs "
        "(provider, trigger, created_at DESC)"
    )


def _items() -> None:
    # A difference a run found. `subject` names what it is about, the same in every run
    # (a charge, a refund, a posting), so a later run can tell a known difference from a new
    # one; (run, kind, subject) is unique, so a page done again after a crash adds nothing.
    kinds = ", ".join(f"'{kind}'" for kind in _KINDS)
    op.execute(
        f"""
        CREATE TABLE reconciliation_items (
          id text PRIMARY KEY DEFAULT gw_new_id('rri'),
          seq bigint GENERATED ALWAYS AS IDENTITY,
          run_id text NOT NULL REFERENCES reconciliation_runs (id) ON DELETE CASCADE,
          provider text NOT NULL,
          kind text NOT NULL CHECK (kind IN ({kinds})),
          subject text NOT NULL,
          charge_id text,
          refund_id text,
          provider_ref text,
          ours jsonb,
          theirs jsonb,
          healed boolean NOT NULL DEFAULT false,
          new boolean NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT reconciliation_items_once UNIQUE (run_id, kind, subject)
        )
        """
    )
    op.execute("CREATE INDEX reconciliation_items_page ON reconciliation_items (run_id, seq)")
    op.execute(
        "CREATE INDEX reconciliation_items_subject ON reconciliation_items "
        "(provider, kind, subject)"
    )


def _records() -> None:
    # The processor's records a run has read (in our minor units), compared page by page
    # with ours and deleted when the run ends: the run's memory stays one page whatever the
    # window holds.
    op.execute(
        """
        CREATE TABLE reconciliation_records (
          run_id text NOT NULL REFERENCES reconciliation_runs (id) ON DELETE CASCADE,
          kind text NOT NULL CHECK (kind IN ('charge', 'refund', 'dispute')),
          provider_ref text NOT NULL,
          provider_charge_id text NOT NULL,
          charge_id text,
          refund_id text,
          idempotency_key text,
          status text NOT NULL,
          amount_minor bigint,
          currency text NOT NULL,
          created_at timestamptz NOT NULL,
          PRIMARY KEY (run_id, kind, provider_ref)
        )
        """
    )
    op.execute(
        "CREATE INDEX reconciliation_records_charge ON reconciliation_records "
        "(run_id, kind, provider_charge_id)"
    )
    op.execute(
        "CREATE INDEX reconciliation_records_ours ON reconciliation_records (run_id, charge_id)"
    )
    for column in ("refund_id", "idempotency_key"):  # a refund of ours, found by our side
        op.execute(
            f"CREATE INDEX reconciliation_records_{column} ON reconciliation_records "
            f"(run_id, {column}) WHERE {column} IS NOT NULL"
        )


def _reading_indexes() -> None:
    # What reconciliation reads ours by: a window's charges and refunds, a refund by the
    # processor's id, and a charge's postings (settlement's postings name their charge).
    op.execute("CREATE INDEX charges_created ON charges (provider, created_at, id)")
    op.execute("CREATE INDEX refunds_created ON refunds (created_at, id)")
    op.execute(
        "CREATE INDEX refunds_provider_refund ON refunds (provider_refund_id) "
        "WHERE provider_refund_id IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX ledger_transactions_charge ON ledger_transactions "
        "((metadata->>'charge_id')) WHERE metadata ? 'charge_id'"
    )


def _ledger_check() -> None:
    # The ledger check's checkpoint: every entry and transaction up to these ids has been
    # verified, and each cached-balance account's entries up to `entries_through` sum to its
    # `net_micros` (debits minus credits). See gateway/ledger/checkpoint.py.
    op.execute(
        """
        CREATE TABLE ledger_check_progress (
          only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
          entries_through bigint NOT NULL,
          transactions_through bigint NOT NULL,
          verified_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE ledger_check_balances (
          account_id bigint PRIMARY KEY,
          net_micros numeric NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE ledger_check_balances")
    op.execute("DROP TABLE ledger_check_progress")
    op.execute("DROP INDEX ledger_transactions_charge")
    op.execute("DROP INDEX refunds_provider_refund")
    op.execute("DROP INDEX refunds_created")
    op.execute("DROP INDEX charges_created")
    op.execute("DROP TABLE reconciliation_records")
    op.execute("DROP TABLE reconciliation_items")
    op.execute("DROP TABLE reconciliation_runs")
