"""The whole path through Adyen: `POST /v1/charges` with `provider: adyen` against a local
Adyen-compatible server over real HTTP (only `GATEWAY_ADYEN_*` set), and the notifications it
signs as Adyen does delivered to `POST /webhooks/adyen`, stored, acknowledged `[accepted]` and
settled into the ledger exactly once, in any order, duplicated or not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.charges.completer import complete_once
from gateway.charges.deps import CHARGE_DEPS
from tests.conftest import AiohttpClient, auth
from tests.support import adyen_server
from tests.support.adyen_payloads import delivery, notification_item
from tests.support.adyen_server import AdyenServer
from tests.support.charges import balance_micros, fetch, open_account, postings
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
API_KEY = "AQE_e2e_" + "e" * 40
HMAC_KEY = "DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00"
BASIC = ("adyen-notifications", "basic-" + "b" * 24)
ACCOUNT = "acct_adyen_e2e"


@pytest.fixture
async def fake_adyen(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AdyenServer]:
    async with adyen_server.for_the_service(monkeypatch, API_KEY, HMAC_KEY, basic=BASIC) as server:
        yield server


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path, fake_adyen: AdyenServer
) -> Client:
    app_client = await adyen_server.serving_adyen(aiohttp_client, db_url, tmp_path, ACCOUNT)
    fake_adyen.webhook_url = str(app_client.make_url("/webhooks/adyen"))
    return app_client


def adyen_charge(stored: str = "stored_visa", **overrides: Any) -> dict[str, Any]:
    body = {
        "account_id": ACCOUNT,
        "amount": 2500,
        "currency": "EUR",
        "payment_method": f"shopper_42/{stored}",
        "provider": "adyen",
    }
    return body | overrides


async def charged(client: Client, key: str, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/charges", json=adyen_charge(**overrides), headers=auth(idempotency_key=key)
    )
    assert response.status == 200, await response.text()
    charge: dict[str, Any] = await response.json()
    return charge


async def charged_after_a_fault(client: Client, key: str) -> dict[str, Any]:
    """A charge whose first request met a fault, answered (200) or left unknown (503): a
    retry with its key gives the charge."""
    first = await client.post("/v1/charges", json=adyen_charge(), headers=auth(idempotency_key=key))
    assert first.status in (200, 503), await first.text()
    return await charged(client, key)


async def refunded(client: Client, charge_id: str, amount: int, key: str) -> dict[str, Any]:
    response = await client.post(
        f"/v1/charges/{charge_id}/refunds",
        json={"amount": amount},
        headers=auth(idempotency_key=key),
    )
    assert response.status == 200, await response.text()
    refund: dict[str, Any] = await response.json()
    assert refund["status"] == "pending", "Adyen answers received: the notification decides"
    return refund


async def settled(db_url: str, count: int) -> None:
    """Wait until the inbox holds `count` events and the worker has taken all of them."""
    query = "SELECT status FROM webhook_events"

    async def done() -> bool:
        rows = await fetch(db_url, query)
        return len(rows) == count and all(row["status"] != "pending" for row in rows)

    await eventually(done, f"{count} notifications settled")


async def status_of(db_url: str, table: str, row_id: str) -> str:
    rows = await fetch(db_url, f"SELECT status FROM {table} WHERE id = $1", row_id)
    return str(rows[0]["status"])


async def test_an_adyen_charge_succeeds_once_and_its_notification_is_a_duplicate(
    client: Client, db_url: str, fake_adyen: AdyenServer
) -> None:
    charge = await charged(client, "adyen-1")
    assert (charge["status"], charge["provider"]) == ("succeeded", "adyen")
    payment = fake_adyen.payments[charge["provider_charge_id"]]
    assert (payment["merchantReference"], payment["amount"]) == (
        charge["id"],
        {"value": 2500, "currency": "EUR"},
    )
    assert await fake_adyen.deliver(duplicate=True) == [200, 200]
    assert fake_adyen.acknowledgements == [(200, "[accepted]")] * 2
    await settled(db_url, 1)
    outcome = await fetch(db_url, "SELECT outcome FROM webhook_events")
    assert outcome[0]["outcome"] == "duplicate"
    assert await postings(db_url, charge["id"]) == [f"adyen:{charge['id']}:captured"]
    assert await balance_micros(db_url, ACCOUNT, "EUR") == 25_000_000


async def test_a_refusal_is_a_stored_402_with_our_decline_code(
    client: Client, db_url: str, fake_adyen: AdyenServer
) -> None:
    response = await client.post(
        "/v1/charges", json=adyen_charge("stored_no_funds"), headers=auth(idempotency_key="a-no")
    )
    assert response.status == 402, await response.text()
    error = (await response.json())["error"]
    assert (error["code"], error["decline_code"]) == ("card_declined", "insufficient_funds")
    assert [path for _, path, _ in fake_adyen.requests] == ["/v71/payments"], "never retried"
    await fake_adyen.deliver()
    await settled(db_url, 1)
    assert await balance_micros(db_url, ACCOUNT, "EUR") == 0


async def test_a_pending_payment_is_settled_by_its_authorisation(
    client: Client, db_url: str, fake_adyen: AdyenServer
) -> None:
    charge = await charged(client, "adyen-pending", payment_method="shopper_42/stored_pending")
    assert charge["status"] == "pending"
    await fake_adyen.deliver()
    await settled(db_url, 1)
    assert await status_of(db_url, "charges", charge["id"]) == "succeeded"
    assert await balance_micros(db_url, ACCOUNT, "EUR") == 25_000_000


async def test_a_lost_answer_ends_in_one_payment(
    client: Client, db_url: str, fake_adyen: AdyenServer
) -> None:
    fake_adyen.lose_next_answers(1)
    charge = await charged_after_a_fault(client, "adyen-lost")
    assert charge["status"] == "succeeded"
    assert len(fake_adyen.payments) == 1
    assert await balance_micros(db_url, ACCOUNT, "EUR") == 25_000_000


async def test_a_payment_still_in_flight_meets_704_and_ends_in_one_payment(
    client: Client, db_url: str, fake_adyen: AdyenServer
) -> None:
    fake_adyen.work_seconds = 0.3  # longer than the first retry's longest wait
    fake_adyen.abandon_next(1)
    charge = await charged_after_a_fault(client, "adyen-704")
    assert 422 in fake_adyen.answered, "the re-send met the key in flight"
    assert charge["status"] == "succeeded"
    assert len(fake_adyen.payments) == 1
    assert await balance_micros(db_url, ACCOUNT, "EUR") == 25_000_000


async def test_an_unanswered_payment_is_resent_under_its_key_by_the_completer(
    client: Client, db_url: str, fake_adyen: AdyenServer
) -> None:
    fake_adyen.lose_next_answers(100)  # every attempt: the charge stays pending
    response = await client.post(
        "/v1/charges", json=adyen_charge(), headers=auth(idempotency_key="adyen-unknown")
    )
    assert response.status == 503, await response.text()
    charge_id = (await response.json())["error"]["charge"]
    fake_adyen.lose_next_answers(0)
    await complete_once(client.app[CHARGE_DEPS], after_seconds=0)
    assert await status_of(db_url, "charges", charge_id) == "succeeded"
    assert len(fake_adyen.payments) == 1, "Adyen replayed the payment made under the key"


async def test_a_refund_stays_pending_until_its_notification_settles_it(
    client: Client, db_url: str, fake_adyen: AdyenServer
) -> None:
    charge = await charged(client, "adyen-r")
    refund = await refunded(client, charge["id"], 1000, "adyen-r-1")
    assert await balance_micros(db_url, ACCOUNT, "EUR") == 25_000_000, "nothing booked yet"
    await fake_adyen.deliver()
    await settled(db_url, 2)
    assert await status_of(db_url, "refunds", refund["id"]) == "succeeded"
    got = await (await client.get(f"/v1/charges/{charge['id']}", headers=auth())).json()
    assert got["amount_refunded"] == 1000
    assert await balance_micros(db_url, ACCOUNT, "EUR") == 15_000_000


async def test_partial_refunds_notified_reversed_and_duplicated_settle_once_each(
    client: Client, db_url: str, fake_adyen: AdyenServer
) -> None:
    charge = await charged(client, "adyen-rr")
    await refunded(client, charge["id"], 1000, "adyen-rr-1")
    await refunded(client, charge["id"], 500, "adyen-rr-2")
    assert await fake_adyen.deliver(reverse=True, duplicate=True) == [200] * 6
    await settled(db_url, 3)
    assert await postings(db_url, charge["id"]) == [
        f"adyen:{charge['id']}:captured",
        f"adyen:{charge['id']}:refunded_total:500",
        f"adyen:{charge['id']}:refunded_total:1500",
    ]
    assert await balance_micros(db_url, ACCOUNT, "EUR") == 10_000_000


async def test_a_failed_refund_frees_its_amount_for_another(
    client: Client, db_url: str, fake_adyen: AdyenServer
) -> None:
    charge = await charged(client, "adyen-rf")
    fake_adyen.fail_next_refunds(1)
    failed = await refunded(client, charge["id"], 2500, "adyen-rf-1")
    await fake_adyen.deliver()
    await settled(db_url, 2)
    assert await status_of(db_url, "refunds", failed["id"]) == "failed"
    retried = await refunded(client, charge["id"], 2500, "adyen-rf-2")
    await fake_adyen.deliver()
    await settled(db_url, 3)
    assert await status_of(db_url, "refunds", retried["id"]) == "succeeded"
    assert await status_of(db_url, "charges", charge["id"]) == "refunded"
    assert await balance_micros(db_url, ACCOUNT, "EUR") == 0


@pytest.mark.parametrize(("outcome", "balance"), [("won", 25_000_000), ("lost", 0)])
async def test_a_chargeback_is_disputed_then_won_or_lost(
    client: Client, db_url: str, fake_adyen: AdyenServer, outcome: str, balance: int
) -> None:
    charge = await charged(client, f"adyen-d-{outcome}")
    dispute = fake_adyen.dispute(charge["provider_charge_id"], outcome)
    await fake_adyen.deliver()
    await settled(db_url, 4)  # the authorisation, the notice, the chargeback, the closing
    assert await postings(db_url, charge["id"]) == [
        f"adyen:{charge['id']}:captured",
        f"adyen:{charge['id']}:dispute:{dispute}:opened",
        f"adyen:{charge['id']}:dispute:{dispute}:{outcome}",
    ]
    assert await balance_micros(db_url, ACCOUNT, "EUR") == balance


async def test_clp_goes_out_in_adyens_hundredths_and_is_booked_in_whole_pesos(
    client: Client, db_url: str, fake_adyen: AdyenServer
) -> None:
    await open_account(db_url, "acct_clp", "CLP")
    charge = await charged(client, "adyen-clp", account_id="acct_clp", currency="CLP", amount=500)
    assert fake_adyen.payments[charge["provider_charge_id"]]["amount"]["value"] == 50_000
    await refunded(client, charge["id"], 200, "adyen-clp-r")
    assert [r["amount"]["value"] for r in fake_adyen.refunds.values()] == [20_000]
    await fake_adyen.deliver()
    await settled(db_url, 2)
    assert await balance_micros(db_url, "acct_clp", "CLP") == 300 * 1_000_000


@pytest.mark.parametrize(
    ("key", "basic"),
    [(HMAC_KEY, ("adyen-notifications", "guessed")), (HMAC_KEY[::-1], BASIC)],
    ids=["wrong_basic_auth", "signed_with_another_key"],
)
async def test_a_notification_not_signed_as_adyen_signs_is_refused_and_not_stored(
    client: Client, db_url: str, key: str, basic: tuple[str, str]
) -> None:
    body, headers = delivery([notification_item("AUTHORISATION")], key, basic=basic)
    response = await client.post("/webhooks/adyen", data=body, headers=headers)
    assert response.status == 400, await response.text()
    assert await fetch(db_url, "SELECT id FROM webhook_events") == []
