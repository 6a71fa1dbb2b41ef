"""The database a charges run starts on: fresh and migrated, with the bench's customers, their
ledger accounts and a history of earlier charges settled as the charge path leaves them (so
the planner sees tables in use), vacuumed, analyzed and checkpointed before the first phase."""

from __future__ import annotations

import asyncpg

from bench.support import fresh_database, settle_database

ACCOUNTS = 1000  # customers the charges are spread over, as in production
HISTORY_CHARGES = 50_000  # settled before the run: the planner sees tables in use, not empty


async def prepared_database() -> str:
    """The URL of the database every phase of the run charges into."""
    db_url = await fresh_database("bench_charges")
    await _open_accounts(db_url)
    await _warm_accounts(db_url)
    await _seed_history(db_url)
    await settle_database(db_url)
    return db_url


async def _open_accounts(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(
            "INSERT INTO customer_accounts (account_id, currency) VALUES ($1, 'USD')",
            [(f"acct_{n}",) for n in range(ACCOUNTS)],
        )
    finally:
        await conn.close()


async def _warm_accounts(db_url: str) -> None:
    """Create the ledger accounts up front so the bare endpoint's look-ups find them."""
    from gateway.ledger.chart import SystemAccount, customer_account, system_account

    conn = await asyncpg.connect(db_url)
    try:
        await system_account(conn, SystemAccount.PROVIDER_CLEARING, "USD", provider="sandbox")
        for n in range(ACCOUNTS):
            await customer_account(conn, f"acct_{n}", "USD")
    finally:
        await conn.close()


# Earlier charges, as the charge path leaves them: succeeded (ids as `gw_new_id` makes them),
# their key finished, their capture posted and the balances moved. Without them the run starts
# on empty tables, and a plan made for an empty table (a sequential scan) is not what a gateway
# in use runs.
_HISTORY = f"""
CREATE TEMP TABLE history AS
SELECT g, 'ch_' || lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0')
              || substr(md5('history' || g), 1, 20) AS id,
       'acct_' || (g % {ACCOUNTS}) AS account_id, at
  FROM generate_series(1, {HISTORY_CHARGES}) AS g,
       LATERAL (SELECT now() - make_interval(secs => {HISTORY_CHARGES} - g)
                       - interval '1 day' AS at) AS t;
INSERT INTO charges (id, account_id, amount_minor, currency, status, provider,
                     provider_charge_id, payment_method, metadata, created_at, updated_at)
SELECT id, account_id, 100, 'USD', 'succeeded', 'sandbox', 'pi_' || md5('pi' || g),
       'pm_card_visa', '{{}}', at, at FROM history;
INSERT INTO idempotency_keys (scope, key, request_method, request_path, fingerprint,
                              recovery_point, charge_id, response_status, response_body,
                              response_headers, created_at, last_run_at)
SELECT 'history', md5('key' || g), 'POST', '/v1/charges', sha256(convert_to(id, 'UTF8')),
       'finished', id, 200, convert_to(repeat('x', 600), 'UTF8'), '{{}}', at, at FROM history;
INSERT INTO ledger_transactions (reference, code, currency, metadata, created_at)
SELECT 'sandbox:' || id || ':captured', 'captured', 'USD', jsonb_build_object('charge_id', id), at
  FROM history;
INSERT INTO ledger_entries (transaction_id, account_id, side, amount_micros)
SELECT t.id, CASE WHEN side = 'debit' THEN clearing.id ELSE customer.id END,
       side::ledger_side, 1000000
  FROM history h
  JOIN ledger_transactions t ON t.reference = 'sandbox:' || h.id || ':captured'
  JOIN ledger_accounts customer ON customer.kind = 'customer_balance'
   AND customer.owner = h.account_id AND customer.currency = 'USD'
  JOIN ledger_accounts clearing ON clearing.kind = 'provider_clearing'
   AND clearing.owner = 'sandbox' AND clearing.currency = 'USD'
 CROSS JOIN unnest(ARRAY['debit', 'credit']) AS side;
UPDATE ledger_accounts a SET balance_micros = balance_micros + d.n * 1000000
  FROM (SELECT account_id, count(*) AS n FROM history GROUP BY account_id) d
 WHERE a.kind = 'customer_balance' AND a.owner = d.account_id AND a.currency = 'USD';
"""  # noqa: S608 - only the bench's constants are interpolated


async def _seed_history(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(_HISTORY)
    finally:
        await conn.close()
