"""A TCP proxy that tests can cut and restore, to take a dependency (PostgreSQL, Redis, a
processor) away from the service without touching the real server: `cut()` drops every open
connection and refuses new ones; `restore()` lets traffic through again.
`drop_answers(n)` lets the next `n` connections' requests through but drops each connection
as its answer starts: the service did the work, and the caller never heard."""

from __future__ import annotations

import asyncio
import contextlib


class FaultProxy:
    def __init__(self, target: tuple[str, int] | str) -> None:
        self._target = target
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.cut_off = False
        self.port = 0
        self.answers_to_drop = 0
        self.answers_dropped = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.cut_off = False

    def drop_answers(self, count: int) -> None:
        self.answers_to_drop = count

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self._target, str):
            return await asyncio.open_unix_connection(self._target)
        return await asyncio.open_connection(*self._target)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await self._open_target()
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        if self.answers_to_drop > 0:
            self.answers_to_drop -= 1
            back = self._drop_answer(up_reader, writer, up_writer)
        else:
            back = self._pipe(up_reader, writer)
        await asyncio.gather(self._pipe(reader, up_writer), back)

    async def _drop_answer(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        """Wait for the answer's first bytes (the request was handled), then drop both sides
        of the connection without passing any of it on."""
        with contextlib.suppress(ConnectionError, OSError):
            await reader.read(1)
        self.answers_dropped += 1
        for side in (writer, up_writer):
            self._writers.discard(side)
            side.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
