"""The sandbox's durable state: an append-only JSON-lines journal replayed on start.

Every change is one line `{"t": <kind>, "v": <object>}` appended and flushed before the
answer that depends on it is sent; replay applies them in order (later lines replace earlier
ones with the same id). Changes that must land together (a charge, its events and the answer
stored under its idempotency key) are written as one `batch` line, so a crash keeps all or
none of them. A torn last line (a crash mid-write) is skipped. On start the processor
rewrites the journal as a snapshot of its live state (`compact`), so it does not grow forever
across restarts. This is a test
processor: lines are flushed to the OS, not fsynced, which survives process restarts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import structlog

log = structlog.get_logger(__name__)

Record = dict[str, Any]


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = None
        self._batch: list[Record] | None = None

    def replay(self) -> Iterator[tuple[str, Record]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as file:
            for number, line in enumerate(file, 1):
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("sandbox.journal.torn_line", line=number)
                    continue
                entries = entry["v"] if entry["t"] == "batch" else [entry]
                for item in entries:
                    yield item["t"], item["v"]

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Write every `append` inside the block as one line, when the block ends."""
        if self._batch is not None:
            raise RuntimeError("journal batches do not nest")
        self._batch = []
        try:
            yield
        finally:
            entries, self._batch = self._batch, None
        if entries:
            self._write({"t": "batch", "v": entries})

    def append(self, kind: str, value: Record) -> None:
        if self._batch is not None:
            self._batch.append({"t": kind, "v": value})
        else:
            self._write({"t": kind, "v": value})

    def _write(self, entry: Record) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = self._ends_torn()
            self._file = self.path.open("a", encoding="utf-8")
            if torn:
                self._file.write("\n")  # end a torn line so the next record stands alone
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._file.flush()

    def _ends_torn(self) -> bool:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as file:
            file.seek(-1, 2)
            return file.read(1) != b"\n"

    def compact(self, records: Iterable[tuple[str, Record]]) -> None:
        """Replace the journal with `records` (the live state), atomically: a crash leaves
        either the old journal or the new one."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = self.path.with_suffix(".compacting")
        with fresh.open("w", encoding="utf-8") as file:
            for kind, value in records:
                file.write(json.dumps({"t": kind, "v": value}, separators=(",", ":")) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(fresh, self.path)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
