"""The commit-time balance check plans once per connection, not once per commit.

Revision ID: 0006
Revises: 0005
"""

from importlib import import_module

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# What the check does is unchanged (see 0002): the first firing in a database transaction
# finds the ledger transactions it wrote entries for and verifies them all, in one query
# each. What changes is that both queries are static, so PL/pgSQL plans them once per
# connection instead of parsing and planning them on every commit (~250 us of every commit,
# most of the check's cost), and that both plans stay good as generic plans:
# - the entries are found between this transaction's first entry and the last id the
#   sequence handed out. A closed range with unknown bounds is estimated narrow, so the plan
#   reads the tail of the primary key; the open range `id >= $1` that 0002 had is estimated
#   as a third of the table and was a full scan as a generic plan.
# - the check reads only by equality on indexed columns (one probe per touched transaction,
#   per entry and per account, the accounts as scalar subqueries).
_LEDGER = import_module("gateway.migrations.versions.0002_ledger")

_STATIC_QUERIES = """\
  SELECT max(id), array_agg(DISTINCT transaction_id) INTO high, touched
    FROM ledger_entries
   WHERE id BETWEEN NEW.id AND (SELECT last_value FROM ledger_entries_id_seq)
     AND xact_id = pg_current_xact_id();
  SELECT x.id, t.reference, s.debits, s.credits, s.legs, s.mixed, s.unknown_accounts,
         t.id IS NULL AS missing
    INTO bad
    FROM unnest(touched) AS x (id)
    LEFT JOIN ledger_transactions t ON t.id = x.id
   CROSS JOIN LATERAL (
     SELECT coalesce(sum(e.amount_micros) FILTER (WHERE e.side = 'debit'), 0) AS debits,
            coalesce(sum(e.amount_micros) FILTER (WHERE e.side = 'credit'), 0) AS credits,
            count(*) AS legs,
            coalesce(bool_or(e.currency IS DISTINCT FROM t.currency), false) AS mixed,
            count(*) FILTER (WHERE e.currency IS NULL) AS unknown_accounts
       FROM (SELECT ee.side, ee.amount_micros,
                    (SELECT a.currency FROM ledger_accounts a WHERE a.id = ee.account_id)
                      AS currency
               FROM ledger_entries ee WHERE ee.transaction_id = x.id) e) s
   WHERE t.id IS NULL OR s.debits <> s.credits OR s.legs < 2 OR s.mixed
   LIMIT 1;"""


def upgrade() -> None:
    op.execute(_LEDGER.BALANCE_CHECK_SKELETON.format(find_and_check=_STATIC_QUERIES))


def downgrade() -> None:
    op.execute(_LEDGER.BALANCE_CHECK_FUNCTION)
