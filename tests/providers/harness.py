"""What every conformance check is given and builds on: the harness (the shared outbound
client and a data directory), the provider built from its kit's settings, and the requests the
checks send (`tests/providers/conformance.py`, `conformance_seam.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from providers.base import ChargeRequest, Provider, ProviderContext, RefundRequest
from tests.providers.kits import Kit


@dataclass(frozen=True, slots=True)
class Harness:
    http: httpx.AsyncClient
    data_dir: Path


Check = Callable[[Kit, type[Provider], Harness], Awaitable[None]]


def charge_request(**overrides: object) -> ChargeRequest:
    values: dict[str, object] = {
        "idempotency_key": "gw_ch_conformance_1",
        "charge_id": "ch_" + "c" * 32,
        "account_id": "acct_conformance",
        "amount_minor": 1234,
        "currency": "usd",
        # A saved card as Stripe (`cus_…/pm_…`) and Adyen (shopperReference/storedPaymentMethodId)
        # name one; the sandbox takes any name.
        "payment_method": "cus_conformance/pm_card_visa",
    }
    values.update(overrides)
    return ChargeRequest(**values)  # type: ignore[arg-type]


REFUND = RefundRequest(
    idempotency_key="gw_re_conformance_1",
    refund_id="re_" + "r" * 32,
    provider_charge_id="ch_at_the_processor_1",
    amount_minor=500,
    currency="usd",
)


def build(kit: Kit, cls: type[Provider], harness: Harness) -> Provider:
    context = ProviderContext(
        http=harness.http,
        data_dir=harness.data_dir,
        service_url="http://gateway.test",
        overrides=dict(kit.overrides),
    )
    return cls.from_env(context)
