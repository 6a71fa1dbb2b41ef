"""Foundation: the service's first revision (feature tables follow in their own revisions).

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Prefixed random ids ("ch_…", "evt_…") are made in the database, as column defaults, so
    # set-based inserts get them too and the kind of an id is obvious from its prefix.
    op.execute(
        """
        CREATE FUNCTION gw_new_id(prefix text) RETURNS text LANGUAGE sql VOLATILE AS $$
          SELECT prefix || '_' || replace(gen_random_uuid()::text, '-', '')
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION gw_new_id(text)")
