"""The sandbox's durable state: an append-only JSON-lines journal replayed on start.

Every change is one line `{"t": <kind>, "v": <object>}` appended and flushed before the
answer that depends on it is sent; replay applies them in order (later lines replace earlier
ones with the same id). A torn last line (a crash mid-write) is skipped. This is a test
processor: lines are flushed to the OS, not fsynced, which survives process restarts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import structlog

log = structlog.get_logger(__name__)

Record = dict[str, Any]


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = None

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
                yield entry["t"], entry["v"]

    def append(self, kind: str, value: Record) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps({"t": kind, "v": value}, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
