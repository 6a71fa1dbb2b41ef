"""API keys as data: named callers, their hashed keys with scopes, and an append-only audit
trail of key events and money-moving requests.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _callers_and_keys()
    _audit_events()


def _callers_and_keys() -> None:
    # A caller is a named principal (`recharge-service`); its id scopes idempotency keys, so
    # every key it holds, before and after a rotation, replays the same answers.
    op.execute(
        """
        CREATE TABLE api_callers (
          id text PRIMARY KEY DEFAULT gw_new_id('caller'),
          name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
          created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # Only the SHA-256 of the secret is stored, never the secret: the key's id (its visible
    # prefix) finds the row, then the digests are compared in constant time. `rate_limits`
    # holds this key's overrides of the default limits, by rate class.
    op.execute(
        """
        CREATE TABLE api_keys (
          id text PRIMARY KEY CHECK (id ~ '^key_[0-9a-f]{12}$'),
          caller_id text NOT NULL REFERENCES api_callers (id),
          environment text NOT NULL CHECK (environment IN ('test', 'live')),
          secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
          scopes text[] NOT NULL CHECK (cardinality(scopes) > 0),
          rate_limits jsonb NOT NULL DEFAULT '{}',
          created_at timestamptz NOT NULL DEFAULT now(),
          last_used_at timestamptz,
          expires_at timestamptz,
          revoked_at timestamptz,
          rotated_to text REFERENCES api_keys (id)
        )
        """
    )
    op.execute("CREATE INDEX api_keys_page ON api_keys (created_at DESC, id DESC)")
    op.execute("CREATE INDEX api_keys_caller ON api_keys (caller_id)")


def _audit_events() -> None:
    # The audit trail: facts, never edited. Caller and key are copied in (not foreign keys):
    # bootstrap keys have no rows, and an event must outlive whatever it names.
    op.execute(
        """
        CREATE TABLE audit_events (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          action text NOT NULL CHECK (action IN
            ('key.created', 'key.rotated', 'key.revoked', 'key.denied', 'request')),
          caller_id text,
          caller_name text NOT NULL,
          key_id text,
          method text,
          route text,
          object_id text,
          request_id text,
          status integer,
          details jsonb NOT NULL DEFAULT '{}',
          created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX audit_events_caller ON audit_events (caller_name, id)")
    op.execute(
        """
        CREATE FUNCTION audit_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
            USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE audit_events")
    op.execute("DROP FUNCTION audit_refuse_change()")
    op.execute("DROP TABLE api_keys")
    op.execute("DROP TABLE api_callers")
