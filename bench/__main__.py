"""`python -m bench [NAME…]`: run the named benchmarks (default: all), one after another so
they never share the machine."""

from __future__ import annotations

import argparse
import importlib

from bench.support import run

BENCHES: list[str] = [
    "providers",
    "ledger",
    "usage",
    "charges",
    "stripe",
    "webhooks",
    "reconciliation",
    "ledger_check",
    "events",
]  # module names under bench/, each with `async def main() -> None`
# The benchmarks whose size is a flag: the keyword their `main` takes, and its option.
SIZES: dict[str, str] = {"reconciliation": "charges", "ledger_check": "entries"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    # No `choices=`: argparse (3.11) checks an empty `nargs="*"` list against them and fails.
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHES))
    parser.add_argument(
        "--charges", type=int, default=100_000, help="reconciliation: charges in the window"
    )
    parser.add_argument(
        "--entries", type=int, default=10_000_000, help="ledger_check: entries in the ledger"
    )
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    for name in args.names or BENCHES:
        module = importlib.import_module(f"bench.{name}")
        sized = {SIZES[name]: getattr(args, SIZES[name])} if name in SIZES else {}
        run(module.main(**sized))


if __name__ == "__main__":
    main()
