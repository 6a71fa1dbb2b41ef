"""Ledger: accounts, transactions and append-only entries, with the database enforcing
double entry; and customer accounts (the API's configurable prepaid balances).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


# The check function is this skeleton around two queries: find the ledger transactions the
# database transaction wrote entries for (into `high`, `touched`), then the first of them
# that does not balance (into `bad`). Migration 0006 fills it with other queries; its
# downgrade restores these.
BALANCE_CHECK_SKELETON = """
CREATE OR REPLACE FUNCTION ledger_entries_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  span text := current_setting('ledger.checked_span', true);
  low bigint;
  high bigint;
  touched bigint[];
  bad record;
BEGIN
  IF NEW.xact_id <> pg_current_xact_id() THEN
    RAISE EXCEPTION 'ledger entry % claims another database transaction', NEW.id
      USING ERRCODE = 'check_violation';
  END IF;
  IF span IS NOT NULL AND span <> '' THEN
    low := split_part(span, ':', 1)::bigint;
    high := split_part(span, ':', 2)::bigint;
    IF NEW.id BETWEEN low AND high THEN
      RETURN NULL;
    END IF;
  END IF;
{find_and_check}
  IF bad.id IS NOT NULL THEN
    RAISE EXCEPTION 'ledger transaction % (%) does not balance: debits %, credits %, '
                    '% entries, mixed currencies %, unknown accounts %, missing %',
                    bad.id, bad.reference, bad.debits, bad.credits, bad.legs, bad.mixed,
                    bad.unknown_accounts, bad.missing
      USING ERRCODE = 'check_violation';
  END IF;
  IF low IS NULL OR NEW.id < low THEN
    low := NEW.id;
  END IF;
  PERFORM set_config('ledger.checked_span', low || ':' || high, true);
  RETURN NULL;
END $$
"""

BALANCE_CHECK_QUERIES = """\
  -- Dynamic SQL, so each commit is planned with its real id (a cached generic plan
  -- can pick full scans); the touched transactions are then looked up one by one.
  EXECUTE 'SELECT max(id), array_agg(DISTINCT transaction_id) FROM ledger_entries
            WHERE id >= $1 AND xact_id = pg_current_xact_id()'
     INTO high, touched USING NEW.id;
  EXECUTE 'SELECT x.id, t.reference, s.debits, s.credits, s.legs, s.mixed,
                  s.unknown_accounts, t.id IS NULL AS missing
             FROM unnest($1::bigint[]) AS x (id)
             LEFT JOIN ledger_transactions t ON t.id = x.id
            CROSS JOIN LATERAL (
              SELECT coalesce(sum(e.amount_micros) FILTER (WHERE e.side = ''debit''), 0)
                       AS debits,
                     coalesce(sum(e.amount_micros) FILTER (WHERE e.side = ''credit''), 0)
                       AS credits,
                     count(*) AS legs,
                     coalesce(bool_or(a.currency IS DISTINCT FROM t.currency), false)
                       AS mixed,
                     count(*) - count(a.id) AS unknown_accounts
                FROM ledger_entries e LEFT JOIN ledger_accounts a ON a.id = e.account_id
               WHERE e.transaction_id = x.id) s
            WHERE t.id IS NULL OR s.debits <> s.credits OR s.legs < 2 OR s.mixed
            LIMIT 1'
     INTO bad USING touched;"""

BALANCE_CHECK_FUNCTION = BALANCE_CHECK_SKELETON.format(find_and_check=BALANCE_CHECK_QUERIES)


def upgrade() -> None:
    op.execute("CREATE TYPE ledger_side AS ENUM ('debit', 'credit')")
    op.execute(
        "CREATE TYPE ledger_account_type AS ENUM "
        "('asset', 'liability', 'equity', 'revenue', 'expense')"
    )
    # balance_micros is the cached balance on the account's normal side (debit for assets
    # and expenses, credit otherwise). NULL means "not cached": hot system accounts that
    # every posting touches derive their balance from entries instead, so no single row
    # serializes the ledger.
    op.execute(
        """
        CREATE TABLE ledger_accounts (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          kind text NOT NULL,
          owner text NOT NULL DEFAULT '',
          currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
          type ledger_account_type NOT NULL,
          balance_micros bigint,
          version bigint NOT NULL DEFAULT 0,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (kind, currency, owner)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE ledger_transactions (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          reference text NOT NULL UNIQUE CHECK (length(reference) BETWEEN 1 AND 512),
          code text NOT NULL CHECK (length(code) BETWEEN 1 AND 64),
          currency text NOT NULL,
          metadata jsonb NOT NULL DEFAULT '{}',
          created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # xact_id records the database transaction that wrote the entry (the top-level one, even
    # inside a savepoint), so the commit-time check can find everything it must verify.
    # No foreign keys: their per-row checks cost more than the rest of the insert together
    # (measured: ~25 ms per 1000 usage debits, see docs/ledger.md). The commit-time check
    # below verifies instead that each entry's transaction and account exist, and neither
    # can ever be deleted (triggers below).
    op.execute(
        """
        CREATE TABLE ledger_entries (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          transaction_id bigint NOT NULL,
          account_id bigint NOT NULL,
          side ledger_side NOT NULL,
          amount_micros bigint NOT NULL CHECK (amount_micros > 0),
          xact_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
          created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id)")
    op.execute("CREATE INDEX ledger_entries_account ON ledger_entries (account_id, id)")

    # Double entry, checked at commit. A deferred constraint trigger fires per entry row, but
    # the first firing in a database transaction verifies, in one set-based query, every
    # ledger transaction that this database transaction wrote entries for, and records the
    # span of entry ids it covered; later firings inside that span return at once. So the
    # cost is one query per commit plus a cheap call per entry, not a query per entry.
    # Entries written after that (SET CONSTRAINTS ... IMMEDIATE, then more inserts) have
    # higher ids, fall outside the span and are checked again.
    op.execute(BALANCE_CHECK_FUNCTION)
    # An ordinary (not ENABLE ALWAYS) trigger: the test fixture empties tables as replica.
    op.execute(
        """
        CREATE CONSTRAINT TRIGGER ledger_entries_balanced
        AFTER INSERT ON ledger_entries
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION ledger_entries_balanced()
        """
    )

    # Append-only: entries and transactions are facts; corrections are new transactions.
    op.execute(
        """
        CREATE FUNCTION ledger_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION '% is append-only: % refused (post a correcting transaction)',
                          TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    for table in ("ledger_entries", "ledger_transactions"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
        )
    op.execute(
        "CREATE TRIGGER ledger_accounts_no_delete BEFORE DELETE ON ledger_accounts "
        "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
    )

    # The API's prepaid accounts: their configuration. Their balance is the ledger's
    # customer_balance account for (account_id, currency).
    op.execute(
        """
        CREATE TABLE customer_accounts (
          account_id text PRIMARY KEY CHECK (length(account_id) BETWEEN 1 AND 255),
          currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
          credit_limit_micros bigint NOT NULL DEFAULT 0 CHECK (credit_limit_micros >= 0),
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE customer_accounts")
    op.execute("DROP TABLE ledger_entries")
    op.execute("DROP TABLE ledger_transactions")
    op.execute("DROP TABLE ledger_accounts")
    op.execute("DROP FUNCTION ledger_refuse_change()")
    op.execute("DROP FUNCTION ledger_entries_balanced()")
    op.execute("DROP TYPE ledger_account_type")
    op.execute("DROP TYPE ledger_side")
