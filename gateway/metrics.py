"""Prometheus metrics across serving processes.

One process keeps its metrics in memory. With `GATEWAY_PROCESSES=N` the kernel spreads
connections over N processes, so a scrape of `/metrics` reaches one of them at random and
would see a random share of the counts. So then every serving process keeps its metrics in
files in one directory (prometheus_client's multiprocess mode) and `/metrics`, in whichever
process answers, reports them all: counters and histograms summed over every process that has
run (a restarted copy's counts stay in), gauges from the live processes only.

prometheus_client picks where values live when it is first imported, and a process has
imported it long before it knows it will be the first of several; so that process starts
over (`share_between_processes`), and the copies inherit the directory through their
environment."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_between_processes(data_dir: Path) -> None:
    """In the first of several serving processes: unless metrics are kept in a directory
    already, start this process over, same arguments and pid, with a fresh
    `<data_dir>/metrics` in its environment (counts from an earlier run must not be added
    in). Returns only when metrics are shared."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        return
    directory = (data_dir / "metrics").resolve()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROCESS_DIR_ENV] = str(directory)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606 - ourselves


def exposition() -> bytes:
    """The text `/metrics` serves: this process's metrics, or every serving process's."""
    if not os.environ.get(MULTIPROCESS_DIR_ENV):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def process_gone(pid: int) -> None:
    """A serving process exited: drop its live gauges (its counts stay in the totals)."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
