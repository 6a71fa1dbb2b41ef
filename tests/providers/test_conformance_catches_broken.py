"""The conformance suite is not a rubber stamp: each check fails for a provider that breaks
the rule it guards. Each broken provider is the sandbox's, with one rule broken."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

import pytest

from providers import http
from providers.base import (
    Capability,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    Provider,
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderRequestError,
    RefundRequest,
    RefundResult,
    RefundStatus,
    WebhookEvent,
)
from providers.sandbox.provider import STATUSES, SandboxProvider, charge_result, refund_result
from tests.providers.conformance import CHECKS
from tests.providers.harness import Harness
from tests.providers.kits import kit_for


class UnknownStatusIsSuccess(SandboxProvider):
    async def create_charge(self, request: ChargeRequest) -> ChargeResult:
        result = await super().create_charge(request)
        if result.raw_status not in STATUSES:
            return dataclasses.replace(result, status=ChargeStatus.SUCCEEDED)
        return result


class DeclineIsAnError(SandboxProvider):
    async def create_charge(self, request: ChargeRequest) -> ChargeResult:
        result = await super().create_charge(request)
        if result.status is ChargeStatus.FAILED:
            raise ProviderRequestError("declined")
        return result


class UnreadableIsSuccess(SandboxProvider):
    async def create_charge(self, request: ChargeRequest) -> ChargeResult:
        try:
            return await super().create_charge(request)
        except ProviderOutcomeUnknown:
            return ChargeResult(ChargeStatus.SUCCEEDED, None, request.amount_minor, "usd")


class EveryFaultIsFinal(SandboxProvider):
    async def create_charge(self, request: ChargeRequest) -> ChargeResult:
        try:
            return await super().create_charge(request)
        except ProviderError as exc:
            raise ProviderRequestError(str(exc)) from exc


class FreshKeyPerCall(SandboxProvider):
    calls = 0

    async def create_charge(self, request: ChargeRequest) -> ChargeResult:
        FreshKeyPerCall.calls += 1
        key = f"{request.idempotency_key}-{FreshKeyPerCall.calls}"
        return await super().create_charge(dataclasses.replace(request, idempotency_key=key))


class TrustsEveryWebhook(SandboxProvider):
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], now: datetime) -> None:
        return None


class IgnoresWebhookClock(SandboxProvider):
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], now: datetime) -> None:
        signed_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), now.tzinfo)
        super().verify_webhook(body, headers, signed_at)


class ReplayGetsNewEventIds(SandboxProvider):
    """Signs no time, as it declares, but ids its events by when they were signed."""

    webhook_signatures_expire = False

    def verify_webhook(self, body: bytes, headers: Mapping[str, str], now: datetime) -> None:
        signed_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), now.tzinfo)
        super().verify_webhook(body, headers, signed_at)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> Sequence[WebhookEvent]:
        return [
            dataclasses.replace(event, event_id=f"{event.event_id}@{headers['webhook-timestamp']}")
            for event in super().parse_webhook(body, headers)
        ]


class RefundsUnderAFreshKey(SandboxProvider):
    async def refund(self, request: RefundRequest) -> RefundResult:
        return await super().refund(dataclasses.replace(request, idempotency_key="gw_fresh"))


class DropsTheRefundId(SandboxProvider):
    async def refund(self, request: RefundRequest) -> RefundResult:
        return dataclasses.replace(await super().refund(request), provider_refund_id=None)


class LogsSecrets(SandboxProvider):
    def scrub(self, text: str) -> str:
        return text


class NeverFindsRefunds(SandboxProvider):
    async def find_refund(self, request: RefundRequest) -> RefundResult | None:
        return None


class TakesAnyRefundOfTheCharge(SandboxProvider):
    async def find_refund(self, request: RefundRequest) -> RefundResult | None:
        params = {"charge": request.provider_charge_id, "limit": 1}
        _, body = await self._send("GET", "/v1/refunds", params=params)
        return refund_result(body["data"][0]) if body["data"] else None


class PicksOneOfADoubleRefund(SandboxProvider):
    async def find_refund(self, request: RefundRequest) -> RefundResult | None:
        try:
            return await super().find_refund(request)
        except ProviderRequestError:
            return RefundResult(RefundStatus.SUCCEEDED, "re_picked", request.amount_minor)


class PartialRefundsWithoutRefunds(SandboxProvider):
    capabilities = frozenset(Capability) - {Capability.REFUND}


class KeysShorterThanOurs(SandboxProvider):
    idempotency_key_length_max = 32


class UntestedExponent(SandboxProvider):
    currency_exponents = MappingProxyType({"JPY": 2})  # the kit has no JPY case


class ExponentItDoesNotUse(SandboxProvider):
    currency_exponents = MappingProxyType({"ISK": 2})  # the sandbox counts ISK in krona


class ScalesAmountsItself(SandboxProvider):
    async def create_charge(self, request: ChargeRequest) -> ChargeResult:
        scaled = request.amount_minor * (100 if request.currency.upper() == "ISK" else 1)
        return await super().create_charge(dataclasses.replace(request, amount_minor=scaled))


class TruncatesKeys(SandboxProvider):
    async def create_charge(self, request: ChargeRequest) -> ChargeResult:
        key = request.idempotency_key[:64]
        return await super().create_charge(dataclasses.replace(request, idempotency_key=key))


class NeverFindsCharges(SandboxProvider):
    async def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        return None


class FindsAnyCharge(SandboxProvider):
    async def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        _, body = await self._send("GET", "/v1/charges", params={"limit": 1})
        return charge_result(body["data"][0]) if body["data"] else None


BROKEN: list[tuple[type[Provider], str]] = [
    (UnknownStatusIsSuccess, "unknown_status_is_pending"),
    (DeclineIsAnError, "charge_outcomes_map_to_statuses_and_declines"),
    (UnreadableIsSuccess, "unreadable_answer_is_never_final"),
    (EveryFaultIsFinal, "faults_are_classified_for_retry"),
    (FreshKeyPerCall, "charge_sends_our_idempotency_key_and_ids"),
    (TrustsEveryWebhook, "webhook_without_signature_is_rejected"),
    (TrustsEveryWebhook, "tampered_webhook_is_rejected"),
    (TrustsEveryWebhook, "webhook_signed_with_another_secret_is_rejected"),
    (IgnoresWebhookClock, "replayed_webhook_is_rejected_or_a_duplicate"),
    (ReplayGetsNewEventIds, "replayed_webhook_is_rejected_or_a_duplicate"),
    (RefundsUnderAFreshKey, "refund_sends_our_key_and_reads_the_answer"),
    (DropsTheRefundId, "refund_sends_our_key_and_reads_the_answer"),
    (LogsSecrets, "scrub_masks_secrets_and_card_numbers"),
    (NeverFindsRefunds, "find_refund_finds_the_refund_made_and_no_other"),
    (TakesAnyRefundOfTheCharge, "find_refund_finds_the_refund_made_and_no_other"),
    (PicksOneOfADoubleRefund, "find_refund_refuses_a_double_refund"),
    (PartialRefundsWithoutRefunds, "declarations_are_coherent"),
    (KeysShorterThanOurs, "declarations_are_coherent"),
    (UntestedExponent, "declarations_are_coherent"),
    (ExponentItDoesNotUse, "amounts_reach_the_wire_in_the_processors_minor_units"),
    (ScalesAmountsItself, "amounts_reach_the_wire_in_the_processors_minor_units"),
    (TruncatesKeys, "the_longest_key_it_declares_is_sent_unchanged"),
    (NeverFindsCharges, "find_charge_finds_the_charge_made_and_no_other"),
    (FindsAnyCharge, "find_charge_finds_the_charge_made_and_no_other"),
]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    client = http.create_client()
    yield Harness(http=client, data_dir=tmp_path)
    await client.aclose()


@pytest.mark.parametrize(
    ("broken", "check"), BROKEN, ids=[f"{cls.__name__}-{check}" for cls, check in BROKEN]
)
async def test_conformance_check_fails_for_a_provider_breaking_its_rule(
    broken: type[Provider], check: str, harness: Harness
) -> None:
    with pytest.raises((AssertionError, pytest.fail.Exception, ProviderError)):
        await CHECKS[check](kit_for("sandbox"), broken, harness)


async def test_the_unbroken_sandbox_provider_passes_those_same_checks(harness: Harness) -> None:
    for _, check in BROKEN:
        await CHECKS[check](kit_for("sandbox"), SandboxProvider, harness)
