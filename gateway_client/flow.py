"""A call to the API as a plan of steps, written once for the sync and the async client:
`Call` says what to send and how to read the answer (possibly into a follow-up call), and
`steps` turns it into `Send` and `Sleep` steps, retrying as `gateway_client.retry` decides.
A client only performs the steps (its I/O) and hands each reply back: `Driver` is that
hand-over, so neither client holds any logic of its own.

    flow = steps(policy, call)          # yields Send(request) -> httpx.Response | TransportError
    ...                                 # yields Sleep(seconds) -> None
    return value                        # the call's answer, or raises its typed error"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx
from pydantic import BaseModel

from gateway_client.errors import ConnectionFailed
from gateway_client.retry import Reply, RetryPolicy, retry_delay
from gateway_client.wire import ApiRequest, parse

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request and what its final answer (after the retries) means: a value, or another
    call to make (a declined charge is read back as the charge)."""

    request: ApiRequest
    answer: Callable[[httpx.Response], T | Call[T]]

    @classmethod
    def of(cls, request: ApiRequest, model: type[M]) -> Call[M]:
        """A call whose 2xx answer is `model` and whose other answers raise."""
        return Call(request, lambda response: parse(model, response))


@dataclass(frozen=True)
class Send:
    request: ApiRequest


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Send | Sleep
Flow = Generator[Step, Reply | None, T]


def steps(policy: RetryPolicy, call: Call[T]) -> Flow[T]:
    """Every step of `call`, follow-up calls included; returns its value."""
    while True:
        response = yield from exchange(policy, call.request)
        outcome = call.answer(response)
        if not isinstance(outcome, Call):
            return outcome
        call = outcome


def exchange(policy: RetryPolicy, request: ApiRequest) -> Flow[httpx.Response]:
    """Send `request` until an answer is final; returns that answer, whatever its status.
    Every attempt is the same request: same body, same Idempotency-Key."""
    attempt = 0
    while True:
        attempt += 1
        reply = yield Send(request)
        if reply is None:  # a client's bug, not the API's: said loudly
            raise TypeError("a Send step is answered with a response or a transport error")
        delay = retry_delay(policy, attempt, reply)
        if delay is None:
            return _final(request, attempt, reply)
        yield Sleep(delay)


def _final(request: ApiRequest, attempts: int, reply: Reply) -> httpx.Response:
    if isinstance(reply, httpx.TransportError):
        what = f"{request.method} {request.path}: no answer after {attempts} attempts ({reply!r})"
        raise ConnectionFailed(what, request.idempotency_key) from reply
    return reply


@dataclass(frozen=True)
class Done(Generic[T]):
    value: T


class Driver(Generic[T]):
    """Runs a flow step by step for a client that performs the steps."""

    def __init__(self, policy: RetryPolicy, call: Call[T]) -> None:
        self._flow = steps(policy, call)

    def first(self) -> Step | Done[T]:
        return self.next(None)

    def next(self, reply: Reply | None) -> Step | Done[T]:
        try:
            return self._flow.send(reply)
        except StopIteration as finished:
            return Done(finished.value)
