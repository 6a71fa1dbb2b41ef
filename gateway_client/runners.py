"""The only code that differs between the sync and the async client: performing a flow's
steps (`gateway_client.flow`) with httpx.Client and `time.sleep`, or with httpx.AsyncClient
and `asyncio.sleep`. Everything they send, retry and parse is decided by the flow."""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

import httpx

from gateway_client.flow import Call, Done, Driver, Sleep, Step
from gateway_client.retry import Reply, RetryPolicy

T = TypeVar("T")


class BlockingRunner:
    def __init__(self, http: httpx.Client, policy: RetryPolicy) -> None:
        self.http = http
        self.policy = policy

    def run(self, call: Call[T]) -> T:
        driver = Driver(self.policy, call)
        step = driver.first()
        while not isinstance(step, Done):
            step = driver.next(self._perform(step))
        return step.value

    def _perform(self, step: Step) -> Reply | None:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        try:
            return self.http.request(**step.request.arguments())
        except httpx.TransportError as error:
            return error


class AsyncRunner:
    def __init__(self, http: httpx.AsyncClient, policy: RetryPolicy) -> None:
        self.http = http
        self.policy = policy

    async def run(self, call: Call[T]) -> T:
        driver = Driver(self.policy, call)
        step = driver.first()
        while not isinstance(step, Done):
            step = driver.next(await self._perform(step))
        return step.value

    async def _perform(self, step: Step) -> Reply | None:
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        try:
            return await self.http.request(**step.request.arguments())
        except httpx.TransportError as error:
            return error
