"""A TCP proxy between the gateway and a dependency (PostgreSQL, the processor) that makes
the network misbehave on command:

- `latency(seconds)`: every chunk waits that long in each direction;
- `drop()`: every open connection is reset (both sides see it die mid-conversation);
- `blackhole()`: bytes stop moving, in both directions and on new connections, until
  `flow()`; nothing is reset, so the peers wait as they would behind a dead route.

`heal()` ends every fault. The proxy never closes a connection on its own otherwise."""

from __future__ import annotations

import asyncio
import contextlib


class ChaosProxy:
    def __init__(self, name: str, target: tuple[str, int]) -> None:
        self.name = name
        self._target = target
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._delay_seconds = 0.0
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.heal()
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def latency(self, seconds: float) -> None:
        self._delay_seconds = seconds

    def blackhole(self) -> None:
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    def drop(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def heal(self) -> None:
        self._delay_seconds = 0.0
        self._flowing.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()  # a black hole swallows the handshake too
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if self._delay_seconds:
                    await asyncio.sleep(self._delay_seconds)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
