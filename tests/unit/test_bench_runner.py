"""`make bench` runs every benchmark when no name is given, and names the choices when a
name is wrong (the runner's argument handling, not the benchmarks themselves)."""

from __future__ import annotations

import subprocess
import sys

from bench.__main__ import BENCHES


def test_an_unknown_benchmark_name_is_refused_with_the_choices() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "nope"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "unknown benchmark(s) nope" in result.stderr
    assert all(name in result.stderr for name in BENCHES)


def test_the_help_lists_every_benchmark() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, check=True
    )
    assert all(name in result.stdout for name in BENCHES)
