"""The load: callers charging every sandbox test card, refunding what they saw succeed,
debiting usage (which crosses auto-recharge thresholds, so top-ups happen), and, at the
processor, cardholders' banks closing disputes won or lost. Choices come from a generator
seeded from the run's seed."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from chaos.callers import Caller, Request
from providers.sandbox.processor import PAYMENT_METHODS

CARDS = sorted(PAYMENT_METHODS)
# Top-up cards by account: most succeed, one settles late, one is flaky, one declines (its
# auto-recharge pauses after a few declines, as it would for a customer).
RECHARGE_CARDS = [
    "pm_card_visa",
    "pm_card_async",
    "pm_card_mastercard",
    "pm_card_flaky",
    "pm_card_chargeDeclined",
]
THRESHOLD = "5.00"
TOP_UP_MINOR = 2000
_CHARGE_MINOR = (100, 3000)
_USAGE_MICROS = (100, 2_000_000)
# Share of operations by kind (the rest of the weight: usage).
_WEIGHTS = {"charge": 45, "refund": 12, "dispute": 6, "usage": 37}
_UNREFUNDABLE = {"pm_card_disputed"}  # refunding a disputed charge is its own story


def usage_amount(micros: int) -> str:
    """Micros as a decimal string in major units (`7900` -> `"0.007900"`)."""
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


@dataclass
class Load:
    caller: Caller
    sandbox_url: str
    accounts: list[str]
    rng: random.Random
    requests: list[Request] = field(default_factory=list)
    refundable: dict[str, int] = field(default_factory=dict)  # charge id -> left, as seen
    name: str = "c0"  # in every key, so callers never share one
    disputes_closed: int = 0
    _serial: int = 0

    def _key(self, kind: str) -> str:
        self._serial += 1
        return f"chaos-{self.name}-{kind}-{self._serial}"

    async def open_accounts(self) -> None:
        for index, account in enumerate(self.accounts):
            body = {
                "currency": "USD",
                "auto_recharge": {
                    "threshold": THRESHOLD,
                    "amount": TOP_UP_MINOR,
                    "payment_method": RECHARGE_CARDS[index % len(RECHARGE_CARDS)],
                },
            }
            request = Request(
                "account", self._key("account"), "PUT", f"/v1/accounts/{account}", body, account
            )
            await self._send(request)
            if request.status not in (200, 201):
                raise RuntimeError(f"could not open {account}: {request.answer}")

    async def run(self, until: float) -> None:
        """One caller's loop: one operation at a time until `until` (time.monotonic())."""
        kinds, weights = list(_WEIGHTS), list(_WEIGHTS.values())
        while time.monotonic() < until:
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "charge":
                await self._charge()
            elif kind == "refund":
                await self._refund()
            elif kind == "usage":
                await self._usage()
            else:
                await self._close_a_dispute()

    async def _send(self, request: Request) -> Request:
        self.requests.append(request)
        return await self.caller.send(request)

    async def _charge(self) -> None:
        account, card = self.rng.choice(self.accounts), self.rng.choice(CARDS)
        key = self._key("charge")
        body = {
            "account_id": account,
            "amount": self.rng.randint(*_CHARGE_MINOR),
            "currency": "USD",
            "payment_method": card,
            "metadata": {"client_key": key},
        }
        request = await self._send(Request("charge", key, "POST", "/v1/charges", body, account))
        answer = request.answer or {}
        succeeded = request.status == 200 and answer.get("status") == "succeeded"
        if succeeded and card not in _UNREFUNDABLE:
            self.refundable[answer["id"]] = int(answer["amount"])

    async def _refund(self) -> None:
        if not self.refundable:
            return
        charge_id = self.rng.choice(sorted(self.refundable))
        left = self.refundable[charge_id]
        amount = self.rng.randint(1, left) if self.rng.random() < 0.7 else None
        body: dict[str, Any] = {} if amount is None else {"amount": amount}
        path = f"/v1/charges/{charge_id}/refunds"
        request = await self._send(Request("refund", self._key("refund"), "POST", path, body, ""))
        answer = request.answer or {}
        if request.status == 200:
            left -= int(answer.get("amount", 0))
        if request.status != 200 or left <= 0:
            self.refundable.pop(charge_id, None)
        else:
            self.refundable[charge_id] = left

    async def _usage(self) -> None:
        account = self.rng.choice(self.accounts)
        key = self._key("usage")
        body = {"amount": usage_amount(self.rng.randint(*_USAGE_MICROS)), "reference": key}
        path = f"/v1/accounts/{account}/usage"
        await self._send(Request("usage", key, "POST", path, body, account))

    async def _close_a_dispute(self) -> None:
        """A cardholder's bank decides an open dispute (at the processor, not through us)."""
        try:
            async with httpx.AsyncClient(base_url=self.sandbox_url, timeout=5.0) as raw:
                listed = await raw.get("/v1/disputes", params={"limit": "100"})
                open_ = [d for d in listed.json()["data"] if d["status"] == "needs_response"]
                if not open_:
                    await asyncio.sleep(0.2)
                    return
                dispute = self.rng.choice(open_)
                outcome = self.rng.choice(["won", "lost"])
                closed = await raw.post(
                    f"/_sandbox/disputes/{dispute['id']}/close", json={"outcome": outcome}
                )
            if closed.status_code == 200:
                self.disputes_closed += 1
        except (httpx.HTTPError, ValueError, KeyError):
            await asyncio.sleep(0.2)  # the processor is down: its bank waits too
