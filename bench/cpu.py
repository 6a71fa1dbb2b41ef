"""Where a benchmark's CPU goes: CPU seconds per process group over a measured window, read
from /proc (Linux; elsewhere the meter reports nothing). On a machine shared by the service,
its database, the processor and the load generator, throughput is bounded by their sum, so
the bench prints each one's CPU per operation beside the rate."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")

Classify = Callable[[str, str], str | None]
"""(comm, cmdline) -> a group name, or None for "other"."""


def _cpu_seconds(classify: Classify) -> tuple[dict[str, float], tuple[int, int]]:
    ticks = os.sysconf("SC_CLK_TCK")
    groups: dict[str, float] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        name = classify(comm, cmdline) or "other"
        groups[name] = groups.get(name, 0.0) + used
    with (PROC / "stat").open() as f:
        jiffies = [int(v) for v in f.readline().split()[1:9]]
    idle = jiffies[3] + jiffies[4]  # idle + iowait
    return groups, (sum(jiffies), idle)


@dataclass(frozen=True)
class CpuUse:
    """CPU milliseconds per operation by group, and how busy the whole machine was (0 to 1)."""

    ms_per_op: dict[str, float]
    busy: float

    def describe(self, unit: str = "op") -> str:
        parts = [
            f"{name} {ms:.2f}"
            for name, ms in sorted(self.ms_per_op.items(), key=lambda item: -item[1])
            if ms >= 0.01
        ]
        return f"CPU ms per {unit}: {', '.join(parts)}; machine {self.busy * 100:.0f}% busy"


class CpuMeter:
    """`start()`, run the load, `stop(operations)`: CPU milliseconds per operation by group,
    and how busy the whole machine was."""

    def __init__(self, classify: Classify) -> None:
        self.classify = classify
        self.available = (PROC / "stat").exists()
        self._start: tuple[dict[str, float], tuple[int, int]] = ({}, (0, 0))

    def start(self) -> None:
        if self.available:
            self._start = _cpu_seconds(self.classify)

    def stop(self, operations: int) -> str:
        use = self.use(operations)
        return "" if use is None else use.describe()

    def use(self, operations: float) -> CpuUse | None:
        """What `operations` operations took since `start()` (None off Linux or for none)."""
        if not self.available or operations == 0:
            return None
        groups, (total, idle) = _cpu_seconds(self.classify)
        before, (total_before, idle_before) = self._start
        # A process that exited during the window is missing from `groups`: its CPU since the
        # start is lost, so a group can only be under-counted, never over-counted.
        used = {name: max(0.0, groups[name] - before.get(name, 0.0)) for name in groups}
        elapsed = max(total - total_before, 1)
        return CpuUse(
            {name: seconds * 1000 / operations for name, seconds in used.items()},
            1 - (idle - idle_before) / elapsed,
        )
