"""Group commit of charge finishes against a real PostgreSQL: finishes handed in together
share one transaction (the rows' `xmin` says so), a batch is capped, a bad finish fails only
itself, the same finish twice settles once, and a cancelled request's finish is written."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.charges import phases
from gateway.charges.answers import charge_answer
from gateway.charges.finisher import Finisher
from gateway.charges.model import ChargeCreate
from gateway.charges.phases import Finish
from providers.base import ChargeResult, ChargeStatus
from tests.support.charges import account_connection, balance_micros, postings

ACCOUNT = "acct_dana"
AMOUNT = 700


@pytest.fixture
async def conn(db_url: str) -> Any:
    async with account_connection(db_url, ACCOUNT) as connection:
        yield connection


async def begun(conn: asyncpg.Connection[Any], n: int) -> Finish:
    """A charge at `charge_created` with its key, as the charge path leaves it before the
    processor call, and the processor's success for it."""
    started = await phases.begin(
        conn,
        scope="key_test",
        key=f"idem_{n}",
        method="POST",
        path="/v1/charges",
        fingerprint=b"fp",
        request=ChargeCreate(
            account_id=ACCOUNT, amount=AMOUNT, currency="USD", payment_method="pm_card_visa"
        ),
        provider="sandbox",
        metadata_json="{}",
    )
    assert started is not None
    key_id, row = started
    result = ChargeResult(ChargeStatus.SUCCEEDED, f"pi_{n}", AMOUNT, "USD")
    return Finish(key_id, "sandbox", row["id"], result)


async def transactions(conn: asyncpg.Connection[Any], finishes: list[Finish]) -> int:
    """How many transactions wrote these charges' final rows."""
    count: int = await conn.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM charges WHERE id = ANY($1::text[])",
        [f.charge_id for f in finishes],
    )
    return count


async def test_finishes_handed_in_together_share_one_transaction(
    conn: asyncpg.Connection[Any], engine: AsyncEngine, db_url: str
) -> None:
    finishes = [await begun(conn, n) for n in range(10)]
    answers = [await Finisher(engine, charge_answer).finish(finishes[0])]  # alone: written at once
    shared = Finisher(engine, charge_answer)
    answers += await asyncio.gather(*(shared.finish(f) for f in finishes[1:]))
    assert [a.response.status for a in answers] == [200] * 10
    assert await transactions(conn, finishes) == 2  # the lone one, then the nine together
    keys = await conn.fetch(
        "SELECT response_body, xmin::text AS tx FROM idempotency_keys WHERE id = ANY($1) "
        "ORDER BY id",
        [f.key_id for f in finishes],
    )
    assert [bytes(k["response_body"]) for k in keys] == [a.response.body for a in answers]
    assert len({k["tx"] for k in keys[1:]}) == 1
    for f in finishes:
        assert await postings(db_url, f.charge_id) == [f"sandbox:{f.charge_id}:captured"]
    assert await balance_micros(db_url, ACCOUNT) == 10 * AMOUNT * 10_000


async def test_a_batch_is_capped(conn: asyncpg.Connection[Any], engine: AsyncEngine) -> None:
    finishes = [await begun(conn, n) for n in range(10)]
    finisher = Finisher(engine, charge_answer, batch_max=4)
    await asyncio.gather(*(finisher.finish(f) for f in finishes))
    assert await transactions(conn, finishes) == 3  # 4 + 4 + 2


async def test_a_bad_finish_fails_alone(
    conn: asyncpg.Connection[Any], engine: AsyncEngine, db_url: str
) -> None:
    good = [await begun(conn, n) for n in range(4)]
    bad = Finish(good[0].key_id, "sandbox", "ch_nobody", good[0].result)
    finisher = Finisher(engine, charge_answer)
    answers = await asyncio.gather(
        *(finisher.finish(f) for f in [good[0], bad, *good[1:]]), return_exceptions=True
    )
    assert isinstance(answers[1], KeyError)
    good_answers = answers[:1] + answers[2:]
    assert [a.response.status for a in good_answers if isinstance(a, phases.Finished)] == [200] * 4
    assert await balance_micros(db_url, ACCOUNT) == 4 * AMOUNT * 10_000


async def test_the_same_finish_twice_in_a_batch_settles_once(
    conn: asyncpg.Connection[Any], engine: AsyncEngine, db_url: str
) -> None:
    finish = await begun(conn, 1)
    finisher = Finisher(engine, charge_answer)
    first, second = await asyncio.gather(finisher.finish(finish), finisher.finish(finish))
    assert first == second
    assert await postings(db_url, finish.charge_id) == [f"sandbox:{finish.charge_id}:captured"]
    assert await balance_micros(db_url, ACCOUNT) == AMOUNT * 10_000


async def test_a_cancelled_requests_finish_is_still_written(
    conn: asyncpg.Connection[Any], engine: AsyncEngine
) -> None:
    finish = await begun(conn, 1)
    finisher = Finisher(engine, charge_answer)
    request = asyncio.create_task(finisher.finish(finish))
    await asyncio.sleep(0)  # handed in, not yet written
    request.cancel()
    await finisher.drain()
    status = await conn.fetchval("SELECT status FROM charges WHERE id = $1", finish.charge_id)
    assert status == "succeeded"
    assert request.cancelled()
