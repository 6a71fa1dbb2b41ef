"""`python -m bench [NAME…]`: run the named benchmarks (default: all), one after another so
they never share the machine."""

from __future__ import annotations

import argparse
import asyncio
import importlib

BENCHES: list[str] = [
    "providers",
    "ledger",
    "charges",
    "stripe",
]  # module names under bench/, each with `async def main() -> None`


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", choices=BENCHES, metavar="NAME", help=", ".join(BENCHES)
    )
    args = parser.parse_args()
    for name in args.names or BENCHES:
        module = importlib.import_module(f"bench.{name}")
        asyncio.run(module.main())


if __name__ == "__main__":
    main()
