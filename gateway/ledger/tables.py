"""The ledger's tables, as SQLAlchemy Core definitions on the service's one `metadata`.

Migration 0002 creates them (with the triggers that make entries append-only and refuse an
unbalanced transaction at commit); these definitions are for ordinary queries."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Enum, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from gateway.db import metadata

SIDE = Enum("debit", "credit", name="ledger_side", create_type=False)
ACCOUNT_TYPE = Enum(
    "asset",
    "liability",
    "equity",
    "revenue",
    "expense",
    name="ledger_account_type",
    create_type=False,
)

ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("type", ACCOUNT_TYPE, nullable=False),
    Column("balance_micros", BigInteger),  # NULL: derived from entries (hot accounts)
    Column("version", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

ledger_transactions = Table(
    "ledger_transactions",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("reference", Text, nullable=False, unique=True),
    Column("code", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("metadata", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", BigInteger, primary_key=True),
    # No database foreign keys (the commit-time check verifies both), so joins name them.
    Column("transaction_id", BigInteger, nullable=False),
    Column("account_id", BigInteger, nullable=False),
    Column("side", SIDE, nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

customer_accounts = Table(
    "customer_accounts",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("currency", Text, nullable=False),
    Column("credit_limit_micros", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
