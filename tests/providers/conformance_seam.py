"""Conformance checks of what a provider declares to the core, which acts on it: its
capabilities, its currency exponents (`currency_exponents`, checked against the amounts its
kit reads off the processor's documentation) and its idempotency key length. Registered in
`conformance.CHECKS` with the others."""

from __future__ import annotations

import json
from typing import Any

import httpx

from gateway import processor_amounts
from gateway.charges.processor import PROCESSOR_KEY_LENGTH
from gateway.money import ISO_4217, MICROS_EXPONENT
from providers.base import Capability, ChargeResult, Provider
from tests.providers.harness import Harness, build, charge_request
from tests.providers.kits import Kit, WireOutcome
from tests.support.wire import mock_wire

# A capability that is meaningless without another.
_IMPLIES = {
    Capability.PARTIAL_REFUND: Capability.REFUND,
    Capability.DISPUTES: Capability.WEBHOOKS,  # disputes only ever arrive by webhook
}


async def check_declarations_are_coherent(kit: Kit, cls: type[Provider], harness: Harness) -> None:
    assert Capability.CHARGE in cls.capabilities, "every provider charges"
    for capability, needed in _IMPLIES.items():
        if capability in cls.capabilities:
            assert needed in cls.capabilities, f"{capability} without {needed}"
    assert cls.idempotency_key_length_max >= PROCESSOR_KEY_LENGTH, (
        f"the gateway's processor keys ({PROCESSOR_KEY_LENGTH} characters) must fit"
    )
    for code, exponent in cls.currency_exponents.items():
        assert code in ISO_4217, f"{code} is not an ISO 4217 code"
        assert 0 <= exponent <= MICROS_EXPONENT, f"{code}: exponent {exponent} out of range"
        assert exponent != ISO_4217[code].exponent, f"{code}: declare only the differences"
    tested = {currency for currency, _, _ in kit.currency_cases}
    untested = set(cls.currency_exponents) - tested
    assert not untested, f"the kit has no currency case for {sorted(untested)}"


async def check_amounts_reach_the_wire_in_the_processors_minor_units(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    for currency, ours, on_wire in kit.currency_cases:
        theirs = processor_amounts.to_processor(cls, currency, ours)
        request = charge_request(amount_minor=theirs, currency=currency.lower())
        with mock_wire(assert_all_called=True) as router:
            route = kit.charge_route(router)
            route.return_value = kit.charge_answer(WireOutcome.SUCCEEDED, request)
            result = await provider.create_charge(request)
        assert kit.sent_amount(route.calls.last.request) == on_wire, (
            f"{ours} {currency} (ISO 4217 minor units) is {on_wire} on the processor's wire"
        )
        back = processor_amounts.charge_result(cls, result)
        assert back.amount_minor == ours, f"{currency}: the answer reads back as {ours}"


async def check_the_longest_key_it_declares_is_sent_unchanged(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    key = ("gw_" + "k" * cls.idempotency_key_length_max)[: cls.idempotency_key_length_max]
    request = charge_request(idempotency_key=key)
    with mock_wire(assert_all_called=True) as router:
        route = kit.charge_route(router)
        route.return_value = kit.charge_answer(WireOutcome.SUCCEEDED, request)
        await provider.create_charge(request)
    sent = route.calls.last.request.headers.get("idempotency-key")
    assert sent == key, "a key of the declared maximum length goes out whole, unchanged"


async def check_find_charge_finds_the_charge_made_and_no_other(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    request = charge_request()
    other = charge_request(idempotency_key="gw_ch_conformance_2", charge_id="ch_" + "o" * 32)
    made: list[dict[str, Any]] = []

    def create(sent: httpx.Request) -> httpx.Response:
        answer = kit.charge_answer(WireOutcome.SUCCEEDED, request)
        made.append(json.loads(answer.content))
        return answer

    with mock_wire(assert_all_called=True) as router:
        kit.charge_route(router).side_effect = create
        kit.charge_lookup_route(router).side_effect = lambda sent: kit.charge_list(sent, made)
        assert await provider.find_charge(request) is None, "nothing charged yet: none"
        created = await provider.create_charge(request)
        found = await provider.find_charge(request)
        assert await provider.find_charge(other) is None, "another charge is not this one"
    assert same_charge(found, created), "the charge made is found"


def same_charge(found: ChargeResult | None, made: ChargeResult) -> bool:
    return found is not None and (found.provider_charge_id, found.amount_minor) == (
        made.provider_charge_id,
        made.amount_minor,
    )
