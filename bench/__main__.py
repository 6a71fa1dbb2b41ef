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
    "events",
]  # module names under bench/, each with `async def main() -> None`


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    # No `choices=`: argparse (3.11) checks an empty `nargs="*"` list against them and fails.
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHES))
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    for name in args.names or BENCHES:
        module = importlib.import_module(f"bench.{name}")
        run(module.main())


if __name__ == "__main__":
    main()
