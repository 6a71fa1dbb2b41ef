"""The `Idempotency-Key` contract as checks any keyed POST route can be put through, over the
in-process client: a repeat is replayed byte for byte, a key reused for another request is a
422, concurrent duplicates run once, and a key belongs to the API key that sent it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from gateway.idempotency import REPLAYED_HEADER
from tests.conftest import API_KEY, auth

Client = TestClient[web.Request, web.Application]


@dataclass(frozen=True)
class Call:
    """One POST: its path and its JSON body (None: no body at all)."""

    path: str
    body: Any = None

    async def send(self, client: Client, key: str, api_key: str = API_KEY) -> ClientResponse:
        headers = auth(api_key, idempotency_key=key)
        if self.body is None:
            return await client.post(self.path, headers=headers)
        return await client.post(self.path, headers=headers, json=self.body)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    replayed: bool
    retry_after: str | None

    def error_code(self) -> str | None:
        if self.status < 400:
            return None
        return str(json.loads(self.body)["error"]["code"])


async def answer(response: ClientResponse) -> Answer:
    return Answer(
        response.status,
        await response.read(),
        response.headers.get(REPLAYED_HEADER) == "true",
        response.headers.get("Retry-After"),
    )


async def run_then_replay(client: Client, call: Call, key: str) -> Answer:
    """Send `call` twice under `key`: the second answer is the first, byte for byte, and
    says it is a replay. Returns the first."""
    first = await answer(await call.send(client, key))
    assert not first.replayed
    again = await answer(await call.send(client, key))
    assert (again.status, again.body, again.replayed) == (first.status, first.body, True)
    return first


async def assert_reused(client: Client, call: Call, key: str) -> None:
    """`key` sent with `call`, another request than the one it was first used for: a 422
    naming the header."""
    response = await call.send(client, key)
    assert response.status == 422, await response.text()
    error = (await response.json())["error"]
    assert (error["code"], error["param"]) == ("idempotency_key_reused", "Idempotency-Key")


async def run_concurrently(client: Client, call: Call, key: str, copies: int = 8) -> Answer:
    """`copies` identical requests at once under one key: exactly one runs; every other one
    is told the key is in flight (409, `Retry-After`) or gets that one's answer replayed.
    Returns the answer of the one that ran."""
    responses = await asyncio.gather(*(call.send(client, key) for _ in range(copies)))
    answers = [await answer(response) for response in responses]
    ran = [a for a in answers if not a.replayed and a.error_code() != "idempotency_key_in_use"]
    assert len(ran) == 1, [(a.status, a.replayed, a.body[:80]) for a in answers]
    for other in answers:
        if other.error_code() == "idempotency_key_in_use":
            assert (other.status, other.retry_after) == (409, "1")
        elif other.replayed:
            assert (other.status, other.body) == (ran[0].status, ran[0].body)
    return ran[0]
