"""The conformance checks every registered provider must pass (run by `test_conformance.py`,
one test per provider and check; `test_conformance_catches_broken.py` shows each check fails
for a provider that breaks its rule).

A check is `async def check(kit, cls, harness)`: it builds the provider from its kit's
settings with `cls.from_env`, puts answers on the wire with respx through the kit, and asserts.
The rules are the contract of `providers.base`; the checks of what a provider declares to the
core (capabilities, currency exponents, key length) are in `conformance_seam.py`. A check that
needs a capability (`NEEDS`) is skipped for a provider that does not declare it: the core never
asks that of it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from providers.base import (
    Capability,
    ChargeStatus,
    DeclineCode,
    EventKind,
    Provider,
    ProviderError,
    ProviderOutcomeUnknown,
    RefundResult,
    WebhookVerificationError,
)
from tests.providers import conformance_seam as seam
from tests.providers.harness import REFUND, Check, Harness, build, charge_request
from tests.providers.kits import Delivery, Kit, WireOutcome
from tests.support.wire import mock_wire

EXPECTED_STATUS = {
    WireOutcome.SUCCEEDED: ChargeStatus.SUCCEEDED,
    WireOutcome.PENDING: ChargeStatus.PENDING,
    WireOutcome.REQUIRES_ACTION: ChargeStatus.REQUIRES_ACTION,
    WireOutcome.DECLINED_CARD: ChargeStatus.FAILED,
    WireOutcome.DECLINED_INSUFFICIENT_FUNDS: ChargeStatus.FAILED,
}
EXPECTED_DECLINES = {
    WireOutcome.DECLINED_CARD: DeclineCode.CARD_DECLINED,
    WireOutcome.DECLINED_INSUFFICIENT_FUNDS: DeclineCode.INSUFFICIENT_FUNDS,
}
REFUND_EVENT_KINDS = (EventKind.CHARGE_REFUNDED, EventKind.REFUND_SUCCEEDED)
CARD_NUMBERS = ("4242424242424242", "4000 0566 5566 5556", "5555-5555-5555-4444")


# -- charges: outcomes are values -------------------------------------------------------------


async def check_charge_outcomes_map_to_statuses_and_declines(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    request = charge_request()
    for outcome, expected in EXPECTED_STATUS.items():
        with mock_wire(assert_all_called=True) as router:
            kit.charge_route(router).return_value = kit.charge_answer(outcome, request)
            result = await provider.create_charge(request)
        assert result.status is expected, f"{outcome} must map to {expected}"
        assert result.decline_code == EXPECTED_DECLINES.get(outcome), f"decline code of {outcome}"
        assert result.amount_minor == request.amount_minor
        if outcome is WireOutcome.SUCCEEDED:
            assert result.provider_charge_id, "a success carries the processor's charge id"


async def check_unknown_status_is_pending(kit: Kit, cls: type[Provider], harness: Harness) -> None:
    provider = build(kit, cls, harness)
    request = charge_request()
    with mock_wire(assert_all_called=True) as router:
        kit.charge_route(router).return_value = kit.charge_answer(
            WireOutcome.UNKNOWN_STATUS, request
        )
        result = await provider.create_charge(request)
    assert result.status is ChargeStatus.PENDING, "an unknown status is pending, never final"


async def check_unreadable_answer_is_never_final(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    request = charge_request()
    for answer in (httpx.Response(200, json={"unexpected": True}), httpx.Response(200, text="<")):
        with mock_wire(assert_all_called=True) as router:
            kit.charge_route(router).return_value = answer
            try:
                result = await provider.create_charge(request)
            except ProviderError as error:
                safe = error.may_have_reached_processor  # an unknown outcome
            else:
                safe = result.status is ChargeStatus.PENDING
        assert safe, "an unreadable answer is pending or an unknown outcome, never final"


async def check_charge_sends_our_idempotency_key_and_ids(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    request = charge_request()
    with mock_wire(assert_all_called=True) as router:
        route = kit.charge_route(router)
        route.return_value = kit.charge_answer(WireOutcome.SUCCEEDED, request)
        await provider.create_charge(request)
        await provider.create_charge(request)
    sent = [call.request for call in route.calls]
    keys = {r.headers.get("idempotency-key") for r in sent}
    assert keys == {request.idempotency_key}, "every call carries our key, unchanged"
    for r in sent:
        body = r.content.decode()
        assert request.charge_id in body, "our charge id goes in the processor's metadata"
        assert request.account_id in body, "our account id goes in the processor's metadata"


# -- faults: typed, with the flags the retry layer and the caller act on ------------------------

FAULTS: list[tuple[str, int | httpx.TransportError, bool, bool, float | None]] = [
    # (name, side effect or HTTP status, retryable, may_have_reached_processor, retry_after)
    ("connection refused", httpx.ConnectError("refused"), True, False, None),
    ("connect timeout", httpx.ConnectTimeout("slow connect"), True, False, None),
    ("read timeout", httpx.ReadTimeout("no answer"), True, True, None),
    ("connection dropped", httpx.RemoteProtocolError("dropped"), True, True, None),
    ("503 with Retry-After", 503, True, True, 7.0),
    ("500", 500, True, True, None),
    ("429 with Retry-After", 429, True, True, 2.0),
    ("409 key in flight", 409, True, True, None),
    ("400 bad request", 400, False, True, None),
    ("401 bad credentials", 401, False, True, None),
]


async def check_faults_are_classified_for_retry(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    request = charge_request()
    for name, fault, retryable, reached, retry_after in FAULTS:
        with mock_wire(assert_all_called=True) as router:
            route = kit.charge_route(router)
            if isinstance(fault, int):
                seconds = int(retry_after) if retry_after is not None else None
                route.return_value = kit.error_answer(fault, seconds)
            else:
                route.side_effect = fault
            with pytest.raises(ProviderError) as caught:
                await provider.create_charge(request)
        error = caught.value
        assert error.retryable is retryable, f"{name}: retryable must be {retryable}"
        assert error.may_have_reached_processor is reached, f"{name}: may_have_reached"
        if retry_after is not None:
            assert error.retry_after_seconds == retry_after, f"{name}: Retry-After honoured"
        if isinstance(fault, httpx.ReadTimeout | httpx.RemoteProtocolError):
            assert isinstance(error, ProviderOutcomeUnknown), f"{name}: the outcome is unknown"


# -- refunds: a lost answer is found again, never guessed ---------------------------------------


def refund_processor(kit: Kit, router: respx.MockRouter) -> None:
    """The processor's refunds on the wire as the kit writes them. It remembers no key (as
    past its key retention): every refund call makes a refund."""
    made: list[dict[str, Any]] = []

    def create(sent: httpx.Request) -> httpx.Response:
        made.append(kit.refund_made(sent))
        return httpx.Response(200, json=made[-1])

    kit.refund_route(router).side_effect = create
    kit.refund_lookup_route(router).side_effect = lambda sent: kit.refund_list(sent, made)


async def check_refund_sends_our_key_and_reads_the_answer(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    with mock_wire(assert_all_called=True) as router:
        route = kit.refund_route(router)
        route.side_effect = lambda sent: httpx.Response(200, json=kit.refund_made(sent))
        made = await provider.refund(REFUND)
    sent = route.calls.last.request
    assert sent.headers.get("idempotency-key") == REFUND.idempotency_key, "our key, unchanged"
    assert made.provider_refund_id, "the processor's refund id is read back"
    assert made.amount_minor == REFUND.amount_minor, "the refund's amount is read back"


def same_refund(found: RefundResult | None, made: RefundResult) -> bool:
    return found is not None and (found.status, found.provider_refund_id, found.amount_minor) == (
        made.status,
        made.provider_refund_id,
        made.amount_minor,
    )


async def check_find_refund_finds_the_refund_made_and_no_other(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    request = REFUND
    # The same charge and amount, another refund of ours: only our identity tells them apart.
    other = replace(REFUND, idempotency_key="gw_re_conformance_2", refund_id="re_" + "o" * 32)
    with mock_wire(assert_all_called=True) as router:
        refund_processor(kit, router)
        assert await provider.find_refund(request) is None, "nothing refunded yet: none"
        made = await provider.refund(request)
        assert same_refund(await provider.find_refund(request), made), "the refund made is found"
        assert await provider.find_refund(other) is None, "another refund is not this one"


async def check_find_refund_refuses_a_double_refund(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    request = REFUND
    with mock_wire(assert_all_called=True) as router:
        refund_processor(kit, router)
        await provider.refund(request)
        await provider.refund(request)  # the processor had forgotten the key: two refunds
        with pytest.raises(ProviderError):
            await provider.find_refund(request)


# -- webhooks ---------------------------------------------------------------------------------


def webhook_kinds(kit: Kit) -> tuple[EventKind, ...]:
    assert kit.refund_event_kind in REFUND_EVENT_KINDS, "refunds are reported one of two ways"
    return (
        EventKind.CHARGE_SUCCEEDED,
        EventKind.CHARGE_FAILED,
        kit.refund_event_kind,
        EventKind.DISPUTE_OPENED,
    )


async def check_genuine_webhooks_verify_and_parse(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    request = charge_request()
    now = datetime.now(UTC)
    for kind in webhook_kinds(kit):
        delivery = kit.delivery(kind, request, at=now)
        provider.verify_webhook(delivery.body, delivery.headers, now)
        events = provider.parse_webhook(delivery.body, delivery.headers)
        assert [e.kind for e in events] == [kind], f"a {kind} delivery parses as {kind}"
        event = events[0]
        assert event.event_id, "events carry the processor's id (the inbox dedupes on it)"
        if kind is EventKind.REFUND_SUCCEEDED:
            # About one refund: named by the processor's id, of a charge named by its id.
            assert event.provider_refund_id, "a refund's outcome names the refund"
            assert event.provider_charge_id, "a refund's outcome names its charge"
            assert event.amount_minor, "a refund's outcome carries the refund's amount"
        else:
            assert event.charge_id == request.charge_id, "our charge id is read back"


def assert_rejected(provider: Provider, delivery: Delivery, now: datetime, why: str) -> None:
    try:
        provider.verify_webhook(delivery.body, delivery.headers, now)
    except WebhookVerificationError:
        return
    pytest.fail(f"accepted a webhook {why}")


async def check_webhook_without_signature_is_rejected(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    now = datetime.now(UTC)
    delivery = kit.delivery(EventKind.CHARGE_SUCCEEDED, charge_request(), at=now)
    stripped = kit.unsigned(delivery)
    assert stripped, "the kit names where the signature is"
    for number, unsigned in enumerate(stripped):
        assert_rejected(provider, unsigned, now, f"without its signature #{number}")


async def check_tampered_webhook_is_rejected(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    now = datetime.now(UTC)
    delivery = kit.delivery(EventKind.CHARGE_SUCCEEDED, charge_request(), at=now)
    tampered = Delivery(kit.tamper(delivery.body), delivery.headers)
    assert_rejected(provider, tampered, now, "whose body changed after signing")


async def check_replayed_webhook_is_rejected_or_a_duplicate(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    now = datetime.now(UTC)
    request = charge_request()
    old = kit.delivery(EventKind.CHARGE_SUCCEEDED, request, at=now - timedelta(hours=1))
    if cls.webhook_signatures_expire:
        assert_rejected(provider, old, now, "signed an hour ago (a replay)")
        return
    # A scheme that signs no time accepts the replay: it must be the same events as the
    # delivery sent now, so the inbox takes it as a duplicate.
    provider.verify_webhook(old.body, old.headers, now)
    fresh = kit.delivery(EventKind.CHARGE_SUCCEEDED, request, at=now)
    replayed_ids = [e.event_id for e in provider.parse_webhook(old.body, old.headers)]
    fresh_ids = [e.event_id for e in provider.parse_webhook(fresh.body, fresh.headers)]
    assert replayed_ids == fresh_ids, "a replayed delivery has its original's event ids"
    failed = kit.delivery(EventKind.CHARGE_FAILED, request, at=now)
    other_ids = [e.event_id for e in provider.parse_webhook(failed.body, failed.headers)]
    assert not set(other_ids) & set(fresh_ids), "another event of the charge has another id"


async def check_webhook_signed_with_another_secret_is_rejected(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    now = datetime.now(UTC)
    request = charge_request()
    forged = kit.delivery(EventKind.CHARGE_SUCCEEDED, request, at=now, secret=kit.wrong_secret)
    assert_rejected(provider, forged, now, "signed with a secret it does not hold")


async def check_unreadable_webhook_body_is_malformed(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    with pytest.raises(WebhookVerificationError) as caught:
        provider.parse_webhook(b"{not json", {})
    assert caught.value.reason == "malformed"


# -- scrubbing --------------------------------------------------------------------------------


async def check_scrub_masks_secrets_and_card_numbers(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    leaky = " | ".join([*kit.secrets, *CARD_NUMBERS, "amount=1234"])
    scrubbed = provider.scrub(leaky)
    for secret in kit.secrets:
        assert secret not in scrubbed, "a secret survived scrub"
    for number in CARD_NUMBERS:
        assert number not in scrubbed, "a card number survived scrub"
    assert "amount=1234" in scrubbed, "scrub keeps what is not secret"


CHECKS: dict[str, Check] = {
    check.__name__.removeprefix("check_"): check
    for check in (
        check_charge_outcomes_map_to_statuses_and_declines,
        check_unknown_status_is_pending,
        check_unreadable_answer_is_never_final,
        check_charge_sends_our_idempotency_key_and_ids,
        check_faults_are_classified_for_retry,
        check_refund_sends_our_key_and_reads_the_answer,
        check_find_refund_finds_the_refund_made_and_no_other,
        check_find_refund_refuses_a_double_refund,
        check_genuine_webhooks_verify_and_parse,
        check_webhook_without_signature_is_rejected,
        check_tampered_webhook_is_rejected,
        check_replayed_webhook_is_rejected_or_a_duplicate,
        check_webhook_signed_with_another_secret_is_rejected,
        check_unreadable_webhook_body_is_malformed,
        check_scrub_masks_secrets_and_card_numbers,
        seam.check_declarations_are_coherent,
        seam.check_amounts_reach_the_wire_in_the_processors_minor_units,
        seam.check_the_longest_key_it_declares_is_sent_unchanged,
        seam.check_find_charge_finds_the_charge_made_and_no_other,
    )
}

_WEBHOOKS = frozenset({Capability.WEBHOOKS})
_REFUND_LOOKUPS = frozenset({Capability.REFUND, Capability.LOOKUP_BY_KEY})
NEEDS: dict[str, frozenset[Capability]] = {
    "refund_sends_our_key_and_reads_the_answer": frozenset({Capability.REFUND}),
    "find_refund_finds_the_refund_made_and_no_other": _REFUND_LOOKUPS,
    "find_refund_refuses_a_double_refund": _REFUND_LOOKUPS,
    "genuine_webhooks_verify_and_parse": _WEBHOOKS,
    "webhook_without_signature_is_rejected": _WEBHOOKS,
    "tampered_webhook_is_rejected": _WEBHOOKS,
    "replayed_webhook_is_rejected_or_a_duplicate": _WEBHOOKS,
    "webhook_signed_with_another_secret_is_rejected": _WEBHOOKS,
    "unreadable_webhook_body_is_malformed": _WEBHOOKS,
    "find_charge_finds_the_charge_made_and_no_other": frozenset({Capability.LOOKUP_BY_KEY}),
}
"""The capabilities a check needs; a provider without them skips it."""
