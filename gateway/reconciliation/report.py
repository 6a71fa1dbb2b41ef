"""How `gateway reconcile` shows a run: a progress line on a terminal while it works, then
the report, as a table or as one JSON object

    {"run_id", "provider", "since", "until", "status", "counts",
     "discrepancies": [{kind, charge_id, refund_id, provider_ref, ours, theirs, healed, new}]}

written as the differences are read back, a page at a time, so a large report never sits in
memory whole."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any, TextIO

import asyncpg

from gateway import limits
from gateway.reconciliation import store
from gateway.reconciliation.service import item_object
from gateway.reconciliation.store import Run

_SHOWN = ("kind", "charge_id", "refund_id", "provider_ref", "ours", "theirs", "healed", "new")
_COLUMNS = (("kind", 24), ("charge_id", 40), ("refund_id", 40), ("provider_ref", 32))


class ProgressLine:
    """One line on a terminal, rewritten after every page; nothing when not on a terminal."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.shown = stream.isatty()

    def __call__(self, phase: str, counts: Mapping[str, int]) -> None:
        if not self.shown:
            return
        read = _read(counts)
        line = (
            f"\r  {phase:<16} processor records {read:>9,}  charges {counts.get('charges', 0):>9,}"
            f"  differences {counts.get('discrepancies', 0):>7,}"
        )
        self.stream.write(line)
        self.stream.flush()

    def done(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


async def _discrepancies(conn: asyncpg.Connection[Any], run: Run) -> AsyncIterator[dict[str, Any]]:
    after = 0
    while True:
        rows = await store.items(conn, run.id, limit=limits.RECONCILE_PAGE_SIZE, after_seq=after)
        for row in rows:
            item = item_object(row)
            yield {name: item[name] for name in _SHOWN}
        if len(rows) < limits.RECONCILE_PAGE_SIZE:
            return
        after = rows[-1]["seq"]


async def write_json(conn: asyncpg.Connection[Any], run: Run, out: TextIO) -> None:
    head = {
        "run_id": run.id,
        "provider": run.provider,
        "since": run.since.isoformat(),
        "until": run.until.isoformat(),
        "status": run.status.value,
        "counts": run.counts,
    }
    out.write(json.dumps(head)[:-1] + ', "discrepancies": [')
    first = True
    async for item in _discrepancies(conn, run):
        out.write(("\n  " if first else ",\n  ") + json.dumps(item))
        first = False
    out.write("\n]}\n" if not first else "]}\n")


async def write_table(conn: asyncpg.Connection[Any], run: Run, out: TextIO) -> None:
    out.write(f"reconciliation run {run.id}: {run.provider} {run.since} .. {run.until}\n")
    header = "".join(name.ljust(width) for name, width in _COLUMNS) + "healed  new\n"
    out.write(header)
    async for item in _discrepancies(conn, run):
        cells = "".join(str(item[name] or "-").ljust(width) for name, width in _COLUMNS)
        out.write(
            f"{cells}{'yes' if item['healed'] else 'no':<8}{'yes' if item['new'] else 'no'}\n"
        )
    counts = run.counts
    out.write(
        f"{counts.get('discrepancies', 0)} differences: {counts.get('healed', 0)} healed, "
        f"{counts.get('unhealed', 0)} left for an operator, {counts.get('new', 0)} new; "
        f"read {_read(counts)} processor records, checked {counts.get('charges', 0)} charges "
        f"of ours\n"
    )


def _read(counts: Mapping[str, int]) -> int:
    """The processor's records a run read, whichever its streams (lists, a report)."""
    return sum(value for name, value in counts.items() if name.startswith("processor_"))
