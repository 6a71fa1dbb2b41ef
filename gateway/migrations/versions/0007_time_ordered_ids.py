"""Ids made by the database start with their creation time, so new rows land at the end of
their indexes.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Same shape as before (prefix, underscore, 32 lowercase hex digits), laid out like a UUIDv7:
# 12 hex digits of Unix milliseconds, then 20 from a random UUID (76 random bits). A charge's
# id is in four indexes (its primary key, its processor key `gw_<id>`, its key row's
# `charge_id`, its ledger reference); with random ids every insert touched a random leaf of
# each, and the first touch of a page after a checkpoint writes the whole page to the WAL
# (in the charges bench's first seconds after a checkpoint: 1.9 full pages and 18.8 KB of WAL
# per charge with random ids, 1.4 and 16 KB with these; client keys, processor ids and
# per-account indexes stay scattered). Time-ordered ids keep inserts on the rightmost leaves,
# which also keeps a large table's hot index pages few. An id now tells when it was made.
_TIME_ORDERED = """
CREATE OR REPLACE FUNCTION gw_new_id(prefix text) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT prefix || '_'
      || lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
      || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20)
$$
"""

_RANDOM = """
CREATE OR REPLACE FUNCTION gw_new_id(prefix text) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT prefix || '_' || replace(gen_random_uuid()::text, '-', '')
$$
"""


def upgrade() -> None:
    op.execute(_TIME_ORDERED)


def downgrade() -> None:
    op.execute(_RANDOM)
