"""The benchmarks' CPU meter attributes CPU to the process groups it is told about."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from bench.cpu import CpuMeter


def test_cpu_burnt_here_is_counted_for_this_process_group() -> None:
    if not os.path.exists("/proc/stat"):  # not Linux: the meter must say nothing, not guess
        meter = CpuMeter(lambda _comm, _cmdline: None)
        assert not meter.available
        assert meter.stop(operations=100) == ""
        return
    me = Path(f"/proc/{os.getpid()}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    meter = CpuMeter(lambda _comm, cmdline: "me" if cmdline == me else None)
    meter.start()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    note = meter.stop(operations=100)
    found = re.search(r"me (\d+\.\d+)", note)
    assert found, note
    assert 1.0 <= float(found.group(1)) <= 4.0, "about 200 ms over 100 operations: 2 ms each"
    assert re.search(r"machine \d+% busy", note)


def test_no_operations_reports_nothing() -> None:
    meter = CpuMeter(lambda _comm, _cmdline: None)
    meter.start()
    assert meter.stop(operations=0) == ""
