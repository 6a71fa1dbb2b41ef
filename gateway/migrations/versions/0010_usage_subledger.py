"""The usage sub-ledger: usage records are the detail, append-only, and the general ledger
carries one summarized transaction per account per accepted batch. Usage transactions posted
before it (one per record) are carried forward as summaries of one record each.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

# The one place this migration's place in the chain is written (tests read it from here).
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Record ids come from the ledger entries' sequence, so a customer's statement (its entries and
# its usage records together) has one order, newest first, and one cursor (`ent_<id>`); a
# record carried forward keeps the id of the entry that debited it, so statement ids and
# cursors handed out before stay valid.
#
# Two indexes and no more, because every record pays for each: (account_id, reference) is the
# exactly-once rule, (account_id, id) the statement. No foreign keys (their per-row checks cost
# more than the insert, see 0002): `gateway check-ledger` verifies that every record is carried
# by a usage transaction of its account, and neither side can be deleted.
_TABLE = """
CREATE TABLE usage_records (
  id bigint NOT NULL DEFAULT nextval('ledger_entries_id_seq'),
  account_id bigint NOT NULL,
  transaction_id bigint NOT NULL,
  amount_micros bigint NOT NULL CHECK (amount_micros > 0),
  created_at timestamptz NOT NULL DEFAULT now(),
  reference text NOT NULL CHECK (reference <> ''),
  description text,
  CONSTRAINT usage_records_statement PRIMARY KEY (account_id, id),
  CONSTRAINT usage_records_once UNIQUE (account_id, reference)
)
"""

# Before the sub-ledger each usage record was a transaction of its own: reference
# `usage:<escaped account id>:<reference>` (the account id holds no ':' once escaped), code
# `usage`, the description in its metadata, and a debit of the customer's balance. Each becomes
# the record it was, carried by that same transaction: no ledger row is written or changed, so
# no balance moves.
_CARRY_FORWARD = """
INSERT INTO usage_records
       (id, account_id, transaction_id, amount_micros, created_at, reference, description)
SELECT e.id, e.account_id, t.id, e.amount_micros, t.created_at,
       regexp_replace(t.reference, '^usage:[^:]*:', ''), t.metadata ->> 'description'
  FROM ledger_transactions t
  JOIN ledger_entries e ON e.transaction_id = t.id AND e.side = 'debit'
  JOIN ledger_accounts a ON a.id = e.account_id AND a.kind = 'customer_balance'
 WHERE t.code = 'usage'
"""

# A summary of several records cannot be read by the code before this migration (it finds
# usage by the ledger reference of each record, and would take the others for unbooked).
_REFUSE_DOWNGRADE = """
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM usage_records GROUP BY transaction_id HAVING count(*) > 1) THEN
    RAISE EXCEPTION 'usage transactions carry several records each; the schema before the '
                    'usage sub-ledger cannot represent them'
      USING ERRCODE = 'restrict_violation';
  END IF;
END $$
"""


def upgrade() -> None:
    op.execute(_TABLE)
    # Append-only like the ledger it details: corrections are new postings, never edits.
    op.execute(
        "CREATE TRIGGER usage_records_append_only BEFORE UPDATE OR DELETE ON usage_records "
        "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER usage_records_no_truncate BEFORE TRUNCATE ON usage_records "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
    )
    op.execute(_CARRY_FORWARD)


def downgrade() -> None:
    op.execute(_REFUSE_DOWNGRADE)
    op.execute("DROP TABLE usage_records")
