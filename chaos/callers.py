"""Callers that behave like real ones: every request has its own Idempotency-Key and is sent
again, with the same key and the same body, after a connection error, a timeout, a 409, a
429 or a 5xx, until it gets a final answer (or the run gives up on it: then it is reported
as unfinished). What each request finally got is recorded for the checks."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

_TIMEOUT_SECONDS = 15.0
_BACKOFF_SECONDS_MAX = 2.0
RETRY_STATUSES = frozenset({409, 429}) | frozenset(range(500, 600))


@dataclass
class Request:
    kind: str  # charge, refund, usage, account
    key: str
    method: str
    path: str
    body: dict[str, Any]
    account_id: str
    attempts: int = 0
    status: int | None = None  # the final answer's status; None: unfinished
    answer: dict[str, Any] | None = None
    charge_ids: set[str] = field(default_factory=set)  # every charge of ours any answer named
    retried_on: dict[str, int] = field(default_factory=dict)

    def as_fact(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "account_id": self.account_id,
            "body": self.body,
            "status": self.status,
            "answer": self.answer,
            "attempts": self.attempts,
            "charge_ids": sorted(self.charge_ids),
            "retried_on": self.retried_on,
        }


def _charge_ids(answer: Any) -> set[str]:
    """Our charge ids an answer names: a charge's own id, or the one an error names."""
    found: set[str] = set()
    if not isinstance(answer, dict):
        return found
    if answer.get("object") == "charge" and isinstance(answer.get("id"), str):
        found.add(answer["id"])
    error = answer.get("error")
    if isinstance(error, dict) and isinstance(error.get("charge"), str):
        found.add(error["charge"])
    return found


class Caller:
    """Sends requests to the gateway until they get final answers, or until `give_up_at`."""

    def __init__(self, base_url: str, api_key: str, rng: random.Random) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=_TIMEOUT_SECONDS)
        self._auth = f"Bearer {api_key}"
        self._rng = rng
        self.give_up_at = float("inf")  # time.monotonic() past which nothing is retried

    async def close(self) -> None:
        await self._http.aclose()

    async def send(self, request: Request) -> Request:
        headers = {"Authorization": self._auth, "Idempotency-Key": request.key}
        while time.monotonic() < self.give_up_at:
            request.attempts += 1
            try:
                response = await self._http.request(
                    request.method, request.path, json=request.body, headers=headers
                )
            except httpx.TransportError as exc:
                self._note(request, type(exc).__name__)
                await self._back_off(None)
                continue
            answer = _json(response)
            request.charge_ids |= _charge_ids(answer)
            if response.status_code in RETRY_STATUSES:
                self._note(request, str(response.status_code))
                await self._back_off(response.headers.get("Retry-After"))
                continue
            request.status, request.answer = response.status_code, answer
            return request
        return request

    def _note(self, request: Request, reason: str) -> None:
        request.retried_on[reason] = request.retried_on.get(reason, 0) + 1

    async def _back_off(self, retry_after: str | None) -> None:
        wait = self._rng.uniform(0.05, 0.5)
        if retry_after is not None and retry_after.isdigit():
            wait = max(wait, min(float(retry_after), _BACKOFF_SECONDS_MAX))
        await asyncio.sleep(wait)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
