"""The sandbox processor as a network peer: its state survives restarts, its idempotency keys
behave as Stripe's, refunds never exceed the capture, its list is the processor's truth, and
its webhooks are signed, redelivered until acknowledged, and can be made to misbehave."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from providers.base import (
    ChargeStatus,
    DisputeOutcome,
    EventKind,
    ProviderRequestError,
    RefundRequest,
    RefundStatus,
    WebhookVerificationError,
)
from providers.sandbox.provider import SandboxProvider
from tests.support.sandbox import Sandbox, WebhookSink, charges_under, request_for


async def post(url: str, path: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    async with httpx.AsyncClient() as raw:
        return await raw.post(url + path, json=body, headers=headers)


CHARGE = {"amount": 500, "currency": "usd", "payment_method": "pm_card_visa", "metadata": {}}


def kinds(provider: SandboxProvider, sink: WebhookSink) -> list[EventKind]:
    return [provider.parse_webhook(d.body, d.headers)[0].kind for d in sink.received]


async def test_same_key_and_parameters_replays_the_stored_answer(sandbox: Sandbox) -> None:
    first = await post(sandbox.url, "/v1/charges", CHARGE, key="k1")
    again = await post(sandbox.url, "/v1/charges", CHARGE, key="k1")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(await charges_under(sandbox)) == 1


async def test_same_key_with_different_parameters_is_refused(
    sandbox: Sandbox, provider: SandboxProvider
) -> None:
    await post(sandbox.url, "/v1/charges", CHARGE, key="k1")
    other = await post(sandbox.url, "/v1/charges", {**CHARGE, "amount": 501}, key="k1")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(await charges_under(sandbox)) == 1


async def test_charges_and_keys_survive_a_sandbox_restart(
    sandbox: Sandbox, provider: SandboxProvider, http_client: httpx.AsyncClient
) -> None:
    request = request_for("pm_card_visa")
    before = await provider.create_charge(request)
    await sandbox.stop()
    await sandbox.start()
    restarted = SandboxProvider(http_client, sandbox.url, sandbox.secret)
    assert before.provider_charge_id is not None
    assert (await restarted.retrieve_charge(before.provider_charge_id)) == before
    assert (await restarted.create_charge(request)) == before  # replayed, not charged again
    assert len(await charges_under(sandbox)) == 1


async def test_a_restart_compacts_the_journal_to_the_live_state(
    sandbox: Sandbox, provider: SandboxProvider, sink: WebhookSink, http_client: httpx.AsyncClient
) -> None:
    request = request_for("pm_card_visa", amount=1000)
    charge = await provider.create_charge(request)
    for key in ("r1", "r2"):
        await provider.refund(RefundRequest(key, key, charge.provider_charge_id or "", 100, "usd"))
    await sink.wait_for(3)
    journal = sandbox.state_dir / "journal.jsonl"
    size_before = journal.stat().st_size
    await sandbox.stop()
    await sandbox.start()
    assert journal.stat().st_size < size_before  # superseded charges and delivered events gone
    charges = await charges_under(sandbox)
    assert [(c["id"], c["amount_refunded"]) for c in charges] == [(charge.provider_charge_id, 200)]
    restarted = SandboxProvider(http_client, sandbox.url, sandbox.secret)
    assert await restarted.create_charge(request) == dataclasses.replace(
        charge, amount_refunded_minor=0
    )  # the stored answer under the key survives compaction


async def test_charge_list_is_paginated_newest_first_with_its_keys(sandbox: Sandbox) -> None:
    for n in range(3):
        await post(sandbox.url, "/v1/charges", CHARGE, key=f"k{n}")
    async with httpx.AsyncClient() as raw:
        page = (await raw.get(f"{sandbox.url}/v1/charges", params={"limit": 2})).json()
        last = page["data"][-1]["id"]
        rest = (
            await raw.get(f"{sandbox.url}/v1/charges", params={"limit": 2, "starting_after": last})
        ).json()
    assert [c["idempotency_key"] for c in page["data"]] == ["k2", "k1"]
    assert page["has_more"] is True
    assert [c["idempotency_key"] for c in rest["data"]] == ["k0"]
    assert rest["has_more"] is False


async def test_refunds_partial_then_full_never_exceed_the_capture(
    provider: SandboxProvider,
) -> None:
    charge = await provider.create_charge(request_for("pm_card_visa", amount=1000))
    assert charge.provider_charge_id is not None

    def refund(key: str, amount: int) -> RefundRequest:
        return RefundRequest(key, "re_" + key, charge.provider_charge_id or "", amount, "usd")

    first = await provider.refund(refund("r1", 300))
    assert first.status is RefundStatus.SUCCEEDED
    assert await provider.refund(refund("r1", 300)) == first  # idempotent replay
    await provider.refund(refund("r2", 700))
    with pytest.raises(ProviderRequestError, match="amount_too_large"):
        await provider.refund(refund("r3", 1))
    after = await provider.retrieve_charge(charge.provider_charge_id)
    assert after.amount_refunded_minor == 1000


async def test_a_refund_is_found_by_its_key_and_an_unknown_one_is_not(
    provider: SandboxProvider, sandbox: Sandbox
) -> None:
    charge = await provider.create_charge(request_for("pm_card_visa", amount=1000))
    charge_id = charge.provider_charge_id or ""
    made = RefundRequest("r1", "re_r1", charge_id, 300, "usd")
    never = RefundRequest("r2", "re_r2", charge_id, 300, "usd")
    result = await provider.refund(made)
    assert await provider.find_refund(made) == result
    assert await provider.find_refund(never) is None, "another refund of the charge is not it"
    async with httpx.AsyncClient() as raw:
        listed = (await raw.get(f"{sandbox.url}/v1/refunds", params={"charge": charge_id})).json()
        bad = await raw.get(f"{sandbox.url}/v1/refunds", params={"limit": 0})
    assert [(r["id"], r["idempotency_key"]) for r in listed["data"]] == [
        (result.provider_refund_id, "r1")
    ]
    assert bad.status_code == 400


async def test_a_declined_charge_cannot_be_refunded(provider: SandboxProvider) -> None:
    declined = await provider.create_charge(request_for("pm_card_chargeDeclined"))
    with pytest.raises(ProviderRequestError, match="charge_not_refundable"):
        await provider.refund(
            RefundRequest("r1", "re_1", declined.provider_charge_id or "", 100, "usd")
        )


async def test_webhooks_are_signed_with_standard_webhooks_and_carry_our_ids(
    provider: SandboxProvider, sink: WebhookSink
) -> None:
    request = request_for("pm_card_visa")
    await provider.create_charge(request)
    (delivery,) = await sink.wait_for(1)
    provider.verify_webhook(delivery.body, delivery.headers, datetime.now(UTC))
    (event,) = provider.parse_webhook(delivery.body, delivery.headers)
    assert (event.kind, event.charge_id) == (EventKind.CHARGE_SUCCEEDED, request.charge_id)
    with pytest.raises(WebhookVerificationError):
        provider.verify_webhook(delivery.body + b" ", delivery.headers, datetime.now(UTC))


async def test_webhooks_are_redelivered_until_acknowledged(
    provider: SandboxProvider, sink: WebhookSink, sandbox: Sandbox
) -> None:
    sink.fail_first = 2
    await provider.create_charge(request_for("pm_card_visa"))
    (delivery,) = await sink.wait_for(1)
    event_ids = [d.headers["webhook-id"] for d in [*sink.refused, delivery]]
    assert event_ids == [delivery.headers["webhook-id"]] * 3


async def test_a_webhook_never_acknowledged_is_abandoned_after_bounded_attempts(
    provider: SandboxProvider, sink: WebhookSink, sandbox: Sandbox
) -> None:
    await post(sandbox.url, "/_sandbox/knobs", {"attempts_max": 3})
    sink.fail_first = 100
    await provider.create_charge(request_for("pm_card_visa"))
    async with asyncio.timeout(5):
        while sandbox.processor.deliverer and sandbox.processor.deliverer.pending():  # noqa: ASYNC110 - the sandbox exposes no event for "queue drained"
            await asyncio.sleep(0.02)
    assert len(sink.refused) == 3
    assert sandbox.processor.events == {}  # given up: nothing left queued or held


async def test_async_charge_answers_pending_and_succeeds_later_by_webhook(
    provider: SandboxProvider, sink: WebhookSink
) -> None:
    result = await provider.create_charge(request_for("pm_card_async"))
    assert result.status is ChargeStatus.PENDING
    await sink.wait_for(2)
    assert kinds(provider, sink) == [EventKind.CHARGE_PENDING, EventKind.CHARGE_SUCCEEDED]
    assert result.provider_charge_id is not None
    later = await provider.retrieve_charge(result.provider_charge_id)
    assert later.status is ChargeStatus.SUCCEEDED


async def test_requires_action_is_answered_as_such(provider: SandboxProvider) -> None:
    result = await provider.create_charge(request_for("pm_card_requiresAction"))
    assert result.status is ChargeStatus.REQUIRES_ACTION


async def test_disputed_charge_opens_a_dispute_that_closes_by_webhook(
    provider: SandboxProvider, sink: WebhookSink, sandbox: Sandbox
) -> None:
    request = request_for("pm_card_disputed")
    await provider.create_charge(request)
    deliveries = await sink.wait_for(2)
    opened = provider.parse_webhook(deliveries[1].body, deliveries[1].headers)[0]
    assert opened.kind is EventKind.DISPUTE_OPENED
    assert opened.charge_id == request.charge_id
    closed = await post(
        sandbox.url, f"/_sandbox/disputes/{opened.dispute_id}/close", {"outcome": "lost"}
    )
    assert closed.status_code == 200
    deliveries = await sink.wait_for(3)
    final = provider.parse_webhook(deliveries[2].body, deliveries[2].headers)[0]
    assert (final.kind, final.dispute_outcome) == (EventKind.DISPUTE_CLOSED, DisputeOutcome.LOST)


async def test_refund_webhook_carries_the_cumulative_refunded_amount(
    provider: SandboxProvider, sink: WebhookSink
) -> None:
    charge = await provider.create_charge(request_for("pm_card_visa", amount=1000))
    for key, amount in (("r1", 300), ("r2", 200)):
        await provider.refund(
            RefundRequest(key, key, charge.provider_charge_id or "", amount, "usd")
        )
    deliveries = await sink.wait_for(3)
    refunded = [provider.parse_webhook(d.body, d.headers)[0] for d in deliveries[1:]]
    assert sorted(e.amount_minor or 0 for e in refunded) == [300, 500]


async def test_paused_webhooks_are_released_in_reverse_order_when_told_to_reorder(
    provider: SandboxProvider, sink: WebhookSink, sandbox: Sandbox
) -> None:
    await post(sandbox.url, "/_sandbox/knobs", {"reorder": True, "concurrency": 1})
    await post(sandbox.url, "/_sandbox/webhooks/pause", {})
    first = await provider.create_charge(request_for("pm_card_visa", key="a"))
    second = await provider.create_charge(request_for("pm_card_visa", key="b"))
    assert sink.received == []
    await post(sandbox.url, "/_sandbox/webhooks/resume", {})
    deliveries = await sink.wait_for(2)
    order = [provider.parse_webhook(d.body, d.headers)[0].provider_charge_id for d in deliveries]
    assert order == [second.provider_charge_id, first.provider_charge_id]


async def test_duplicate_deliveries_repeat_the_same_event_id(
    provider: SandboxProvider, sink: WebhookSink, sandbox: Sandbox
) -> None:
    knobs = await post(sandbox.url, "/_sandbox/knobs", {"duplicate_deliveries": 2})
    assert knobs.json()["duplicate_deliveries"] == 2
    await provider.create_charge(request_for("pm_card_visa"))
    deliveries = await sink.wait_for(3)
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1


@pytest.mark.parametrize(
    "bad",
    [{"explode": True}, {"reorder": 1}, {"concurrency": 0}, {"delivery_delay_seconds": 86_400}],
)
async def test_bad_knobs_are_refused_and_none_of_the_batch_applies(
    sandbox: Sandbox, bad: dict[str, Any]
) -> None:
    response = await post(sandbox.url, "/_sandbox/knobs", {"duplicate_deliveries": 3, **bad})
    assert response.status_code == 400
    assert sandbox.processor.knobs.duplicate_deliveries == 0


async def test_undelivered_webhooks_are_sent_after_a_restart(
    provider: SandboxProvider, sink: WebhookSink, sandbox: Sandbox
) -> None:
    await post(sandbox.url, "/_sandbox/webhooks/pause", {})
    await provider.create_charge(request_for("pm_card_visa"))
    await sandbox.stop()
    assert sink.received == []
    await sandbox.start()
    (delivery,) = await sink.wait_for(1)
    assert (
        provider.parse_webhook(delivery.body, delivery.headers)[0].kind
        is EventKind.CHARGE_SUCCEEDED
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHARGE, "amount": 5.5}, "amount"),
        ({**CHARGE, "amount": 0}, "amount"),
        ({**CHARGE, "currency": "dollars"}, "currency"),
        ({**CHARGE, "payment_method": "pm_nope"}, "payment_method"),
        ({**CHARGE, "metadata": {"n": 1}}, "metadata"),
    ],
)
async def test_bad_charge_parameters_are_a_400_naming_the_field(
    sandbox: Sandbox, body: dict[str, Any], param: str
) -> None:
    response = await post(sandbox.url, "/v1/charges", body, key="k")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert await charges_under(sandbox) == []


async def test_refunding_the_rest_without_an_amount_replays_under_its_key(sandbox: Sandbox) -> None:
    charge = (await post(sandbox.url, "/v1/charges", CHARGE, key="c")).json()
    await post(sandbox.url, "/v1/refunds", {"charge": charge["id"], "amount": 200}, key="r1")
    rest = await post(sandbox.url, "/v1/refunds", {"charge": charge["id"]}, key="r2")
    again = await post(sandbox.url, "/v1/refunds", {"charge": charge["id"]}, key="r2")
    assert rest.json()["amount"] == 300
    assert again.json() == rest.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    nothing_left = await post(sandbox.url, "/v1/refunds", {"charge": charge["id"]}, key="r3")
    assert nothing_left.json()["error"]["code"] == "amount_too_large"
