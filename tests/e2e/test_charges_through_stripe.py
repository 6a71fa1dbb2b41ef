"""The whole charge path through Stripe: `POST /v1/charges` with `provider: stripe`, the
service pointed at a local Stripe-compatible server over real HTTP (only
`GATEWAY_STRIPE_API_KEY` and `GATEWAY_STRIPE_API_BASE` set), settled into the ledger once, in
ISO 4217 minor units whatever Stripe's own units for the currency."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.charges.completer import complete_once
from gateway.charges.deps import CHARGE_DEPS
from gateway.state import Role
from tests.conftest import AiohttpClient, auth, make_settings
from tests.support import stripe_server
from tests.support.charges import balance_micros, fetch, open_account, postings
from tests.support.stripe_payloads import fixture, signature_header
from tests.support.stripe_server import StripeServer
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
STRIPE_KEY = "sk_test_e2e_" + "e" * 24
WEBHOOK_SECRET = "whsec_e2e_" + "w" * 24
ACCOUNT = "acct_stripe_e2e"


@pytest.fixture
async def fake_stripe(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StripeServer]:
    async with stripe_server.running(STRIPE_KEY) as server:
        monkeypatch.setenv("GATEWAY_STRIPE_API_KEY", STRIPE_KEY)
        monkeypatch.setenv("GATEWAY_STRIPE_API_BASE", server.url)
        monkeypatch.setenv("GATEWAY_STRIPE_WEBHOOK_SECRETS", WEBHOOK_SECRET)
        yield server


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path, fake_stripe: StripeServer
) -> Client:
    await open_account(db_url, ACCOUNT, "USD")
    return await aiohttp_client(create_app(make_settings(db_url, tmp_path), Role.SERVE))


def stripe_charge(
    payment_method: str = "pm_card_visa",
    amount: int = 2500,
    currency: str = "USD",
    account: str = ACCOUNT,
) -> dict[str, Any]:
    return {
        "account_id": account,
        "amount": amount,
        "currency": currency,
        "payment_method": payment_method,
        "provider": "stripe",
    }


async def test_a_stripe_charge_succeeds_once_and_credits_the_balance(
    client: Client, db_url: str, fake_stripe: StripeServer
) -> None:
    response = await client.post(
        "/v1/charges", json=stripe_charge(), headers=auth(idempotency_key="stripe-1")
    )
    assert response.status == 200, await response.text()
    charge = await response.json()
    assert (charge["status"], charge["provider"]) == ("succeeded", "stripe")
    assert list(fake_stripe.intents) == [charge["provider_charge_id"]]
    intent = fake_stripe.intents[charge["provider_charge_id"]]
    assert intent["metadata"]["charge_id"] == charge["id"]
    assert await postings(db_url, charge["id"]) == [f"stripe:{charge['id']}:captured"]
    assert await balance_micros(db_url, ACCOUNT) == 25_000_000

    replay = await client.post(
        "/v1/charges", json=stripe_charge(), headers=auth(idempotency_key="stripe-1")
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(fake_stripe.intents) == 1


async def test_a_stripe_decline_is_a_stored_402_with_the_decline_code(
    client: Client, db_url: str, fake_stripe: StripeServer
) -> None:
    response = await client.post(
        "/v1/charges",
        json=stripe_charge("pm_card_insufficientFunds"),
        headers=auth(idempotency_key="stripe-decline"),
    )
    assert response.status == 402, await response.text()
    error = (await response.json())["error"]
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error",
        "card_declined",
        "insufficient_funds",
    )
    creates = [r for r in fake_stripe.requests if r[:2] == ("POST", "/v1/payment_intents")]
    assert len(creates) == 1, "a decline is never retried"
    assert await balance_micros(db_url, ACCOUNT) == 0


async def test_a_lost_stripe_answer_ends_in_one_payment_intent(
    client: Client, db_url: str, fake_stripe: StripeServer
) -> None:
    fake_stripe.lose_next_answers(1)
    response = await client.post(
        "/v1/charges", json=stripe_charge(), headers=auth(idempotency_key="stripe-lost")
    )
    assert response.status in (200, 503), await response.text()
    retried = await client.post(
        "/v1/charges", json=stripe_charge(), headers=auth(idempotency_key="stripe-lost")
    )
    charge = await retried.json()
    assert charge["status"] == "succeeded", charge
    assert len(fake_stripe.intents) == 1
    assert await balance_micros(db_url, ACCOUNT) == 25_000_000


async def charge_and_refund(client: Client, key: str) -> tuple[dict[str, Any], ClientResponse]:
    """A Stripe charge of 2500 under `key`, and the answer to refunding 1000 of it."""
    charge = await (
        await client.post("/v1/charges", json=stripe_charge(), headers=auth(idempotency_key=key))
    ).json()
    refund = await client.post(
        f"/v1/charges/{charge['id']}/refunds",
        json={"amount": 1000},
        headers=auth(idempotency_key=f"{key}-1"),
    )
    return charge, refund


async def test_a_stripe_refund_reverses_the_credit(
    client: Client, db_url: str, fake_stripe: StripeServer
) -> None:
    charge, refund = await charge_and_refund(client, "stripe-r")
    assert refund.status == 200, await refund.text()
    assert fake_stripe.refunded[charge["provider_charge_id"]] == 1000
    assert await balance_micros(db_url, ACCOUNT) == 15_000_000


async def resume_a_day_later(
    client: Client, db_url: str, fake_stripe: StripeServer, table: str, row_id: str
) -> None:
    """The completer resumes a charge or refund (its `table` row) a day and more after it was
    made: Stripe answers again but no longer knows any key, so re-sending would act twice."""
    fake_stripe.lose_next_answers(0)
    fake_stripe.lose_next_refund_answers(0)
    fake_stripe.forget_keys()
    await fetch(
        db_url,
        f"UPDATE {table} SET created_at = created_at - interval '25 hours' WHERE id = $1",
        row_id,
    )
    await complete_once(client.app[CHARGE_DEPS], after_seconds=0)


async def test_a_charge_resumed_after_stripe_forgot_its_key_is_found_not_charged_again(
    client: Client, db_url: str, fake_stripe: StripeServer
) -> None:
    fake_stripe.lose_next_answers(100)  # every attempt's answer: the charge stays pending
    response = await client.post(
        "/v1/charges", json=stripe_charge(), headers=auth(idempotency_key="stripe-old")
    )
    assert response.status == 503, await response.text()
    charge_id = (await response.json())["error"]["charge"]
    assert len(fake_stripe.intents) == 1, "the first attempt made the PaymentIntent"
    await resume_a_day_later(client, db_url, fake_stripe, "charges", charge_id)
    assert len(fake_stripe.intents) == 1, "found by its metadata, not created a second time"
    rows = await fetch(db_url, "SELECT status FROM charges WHERE id = $1", charge_id)
    assert rows[0]["status"] == "succeeded"
    assert await postings(db_url, charge_id) == [f"stripe:{charge_id}:captured"]
    assert await balance_micros(db_url, ACCOUNT) == 25_000_000


async def test_a_refund_resumed_after_stripe_forgot_its_key_is_found_not_refunded_again(
    client: Client, db_url: str, fake_stripe: StripeServer
) -> None:
    fake_stripe.lose_next_refund_answers(100)  # every attempt's answer: the refund stays pending
    charge, response = await charge_and_refund(client, "stripe-ro")
    assert response.status == 503, await response.text()
    refund_id = (await response.json())["error"]["refund"]
    assert len(fake_stripe.refunds) == 1, "the first attempt made the refund"
    await resume_a_day_later(client, db_url, fake_stripe, "refunds", refund_id)
    assert len(fake_stripe.refunds) == 1, "found by its metadata, not refunded a second time"
    assert fake_stripe.refunded[charge["provider_charge_id"]] == 1000
    rows = await fetch(
        db_url, "SELECT status, provider_refund_id FROM refunds WHERE id = $1", refund_id
    )
    assert (rows[0]["status"], rows[0]["provider_refund_id"]) == (
        "succeeded",
        *fake_stripe.refunds,
    )
    assert await postings(db_url, charge["id"]) == [
        f"stripe:{charge['id']}:captured",
        f"stripe:{charge['id']}:refunded_total:1000",
    ]
    assert await balance_micros(db_url, ACCOUNT) == 15_000_000


# Currencies Stripe counts in other minor units than ISO 4217


async def charge_in(client: Client, db_url: str, currency: str, amount: int) -> ClientResponse:
    """`POST /v1/charges` of `amount` (ISO 4217 minor units) on a new account in `currency`."""
    account = f"acct_{currency.lower()}"
    await open_account(db_url, account, currency)
    return await client.post(
        "/v1/charges",
        json=stripe_charge(amount=amount, currency=currency, account=account),
        headers=auth(idempotency_key=f"stripe-{currency}-{amount}"),
    )


async def test_an_isk_charge_goes_out_in_stripes_hundredths_and_books_whole_krona(
    client: Client, db_url: str, fake_stripe: StripeServer
) -> None:
    response = await charge_in(client, db_url, "ISK", 500)
    assert response.status == 200, await response.text()
    charge = await response.json()
    assert (charge["amount"], charge["currency"], charge["status"]) == (500, "ISK", "succeeded")
    assert fake_stripe.intents[charge["provider_charge_id"]]["amount"] == 50_000
    assert await balance_micros(db_url, "acct_isk", "ISK") == 500 * 1_000_000

    refund = await client.post(
        f"/v1/charges/{charge['id']}/refunds",
        json={"amount": 200},
        headers=auth(idempotency_key="stripe-isk-refund"),
    )
    assert refund.status == 200, await refund.text()
    assert (await refund.json())["amount"] == 200
    assert fake_stripe.refunded[charge["provider_charge_id"]] == 20_000
    assert await balance_micros(db_url, "acct_isk", "ISK") == 300 * 1_000_000


async def test_mga_goes_out_without_decimals(
    client: Client, db_url: str, fake_stripe: StripeServer
) -> None:
    response = await charge_in(client, db_url, "MGA", 1000)  # MGA 10.00
    assert response.status == 200, await response.text()
    charge = await response.json()
    assert fake_stripe.intents[charge["provider_charge_id"]]["amount"] == 10
    assert await balance_micros(db_url, "acct_mga", "MGA") == 10 * 1_000_000


async def test_an_amount_stripe_cannot_carry_is_refused_and_nothing_is_stored(
    client: Client, db_url: str, fake_stripe: StripeServer
) -> None:
    response = await charge_in(client, db_url, "MGA", 150)  # MGA 1.50: Stripe has no decimals
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["param"] == "amount"
    assert fake_stripe.requests == []
    assert await fetch(db_url, "SELECT id FROM charges") == []
    assert await fetch(db_url, "SELECT id FROM idempotency_keys") == []

    charged = await client.post(
        "/v1/charges",
        json=stripe_charge(amount=1000, currency="MGA", account="acct_mga"),
        headers=auth(idempotency_key="stripe-MGA-150"),  # the refused request's key: unused
    )
    assert charged.status == 200, await charged.text()
    refund = await client.post(
        f"/v1/charges/{(await charged.json())['id']}/refunds",
        json={"amount": 150},
        headers=auth(idempotency_key="stripe-mga-refund"),
    )
    assert refund.status == 400, await refund.text()
    assert (await refund.json())["error"]["param"] == "amount"
    assert fake_stripe.refunded == {}
    assert await fetch(db_url, "SELECT id FROM refunds") == []


async def test_a_stripe_refund_webhook_in_isk_settles_in_whole_krona(
    client: Client, db_url: str, fake_stripe: StripeServer
) -> None:
    charge = await (await charge_in(client, db_url, "ISK", 500)).json()
    event = fixture("event.charge.refunded")
    event["data"]["object"].update(
        amount=50_000,
        amount_refunded=30_000,  # ISK 300, in Stripe's hundredths
        currency="isk",
        payment_intent=charge["provider_charge_id"],
        metadata={"charge_id": charge["id"], "account_id": "acct_isk"},
    )
    body = json.dumps(event).encode()
    signed = signature_header(body, WEBHOOK_SECRET, int(time.time()))
    delivered = await client.post(
        "/webhooks/stripe", data=body, headers={"Stripe-Signature": signed}
    )
    assert delivered.status == 200, await delivered.text()

    async def settled() -> bool:
        return await balance_micros(db_url, "acct_isk", "ISK") == 200 * 1_000_000

    await eventually(settled, "the refund webhook settled as ISK 300")
    assert await postings(db_url, charge["id"]) == [
        f"stripe:{charge['id']}:captured",
        f"stripe:{charge['id']}:refunded_total:300",
    ]
