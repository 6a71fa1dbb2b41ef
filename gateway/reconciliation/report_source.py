"""A processor's records from its report files: Adyen's Settlement details reports
(`providers.adyen.settlement_report`), read as a `RecordSource` with one stream, `report`.

A page is at most `limits.RECONCILE_PAGE_SIZE` lines of one file; its cursor is where the next
page starts, as JSON: the files (in the order given), which one, the byte offset and line
number in it, and that file's size. The run stores it with the page's work, so a run that
crashed resumes where it was, given the same files (`gateway reconcile --report ...`); other
files, or a file that changed since, are refused rather than read from a wrong place.

Lines outside the run's window [since, until) by their Creation Date, and lines that are not
charges, refunds or disputes (fees, payouts, another merchant account's), are skipped and
counted on the page (`RecordPage.skipped`, into the run's counts as `skipped_<why>`)."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway import limits, processor_amounts
from gateway.errors import invalid
from providers.adyen import AdyenProvider
from providers.adyen.settlement_report import ReportError, SettlementReport
from providers.base import Provider
from providers.listing import ProcessorRecord, RecordPage

OUTSIDE_WINDOW = "outside_window"


def reads_reports(provider: Provider) -> bool:
    """Whether `provider` is reconciled from report files (`ReportSource`)."""
    return isinstance(provider, AdyenProvider)


@dataclass(frozen=True, slots=True)
class _Position:
    file: int
    offset: int | None  # None: the file's first data line
    line: int
    size: int | None  # the file's size when its first page was read


class ReportSource:
    """Adyen's settlement reports at `paths`, for a run over [since, until)."""

    streams: Sequence[str] = ("report",)

    def __init__(
        self, provider: Provider, paths: Sequence[Path], since: datetime, until: datetime
    ) -> None:
        if not isinstance(provider, AdyenProvider):
            raise invalid("report", f"{provider.name} is not reconciled from report files")
        if not paths:
            raise invalid("report", "at least one report file is needed")
        if len(paths) > limits.RECONCILE_REPORT_FILES_MAX:
            raise invalid("report", f"at most {limits.RECONCILE_REPORT_FILES_MAX} report files")
        missing = [str(path) for path in paths if not Path(path).is_file()]
        if missing:
            raise invalid("report", f"no such report file: {', '.join(missing)}")
        self._provider = provider
        self._paths = [str(Path(path).resolve()) for path in paths]
        self._window = (since, until)

    async def page(self, stream: str, cursor: str | None) -> RecordPage[ProcessorRecord]:
        position = self._position(cursor)
        # Reading files blocks: off the event loop, which serves requests in the service.
        return await asyncio.to_thread(self._read, position)

    def _position(self, cursor: str | None) -> _Position:
        if cursor is None:
            return _Position(0, None, 1, None)
        saved = json.loads(cursor)
        if saved["files"] != self._paths:
            files = ", ".join(saved["files"])
            raise invalid("report", f"this run was reading other report files: {files}")
        return _Position(saved["file"], saved["offset"], saved["line"], saved["size"])

    def _read(self, at: _Position) -> RecordPage[ProcessorRecord]:
        path = self._paths[at.file]
        records: list[ProcessorRecord] = []
        skipped: Counter[str] = Counter()
        since, until = self._window
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if at.size is not None and size != at.size:
                raise ReportError(f"{path} changed since this run began reading it", line=at.line)
            report = SettlementReport(
                stream,
                lambda code: processor_amounts.processor_exponent(self._provider, code),
                self._provider.merchant_account,
            )
            end: tuple[int, int] | None = None
            for entry in report.entries(at.offset, at.line):
                if entry.record is None:
                    skipped[entry.skipped or "unknown"] += 1
                elif since <= entry.record.created_at < until:
                    records.append(entry.record)
                else:
                    skipped[OUTSIDE_WINDOW] += 1
                if entry.line - at.line >= limits.RECONCILE_PAGE_SIZE:
                    end = (entry.end, entry.line)
                    break
        return RecordPage(records, self._next(at.file, end, size), dict(skipped))

    def _next(self, file: int, end: tuple[int, int] | None, size: int) -> str | None:
        """The cursor after a page: further in this file, else the next file, else None."""
        if end is not None:
            offset, line = end
            return self._cursor(file, offset, line, size)
        if file + 1 < len(self._paths):
            return self._cursor(file + 1, None, 1, None)
        return None

    def _cursor(self, file: int, offset: int | None, line: int, size: int | None) -> str:
        position = {"file": file, "offset": offset, "line": line, "size": size}
        return json.dumps({"files": self._paths, **position})
