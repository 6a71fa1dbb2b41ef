"""`python -m chaos --profile short|long [--seed N] [--out DIR]` (`make chaos`)."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import warnings
from pathlib import Path

from chaos.profiles import PROFILES
from chaos.run import run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument("--seed", type=int, default=None, help="replay a run's schedule")
    parser.add_argument("--out", type=Path, default=Path(".gateway/chaos"), help="run folders")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    warnings.simplefilter("ignore", ResourceWarning)  # sockets of killed peers, at teardown
    return asyncio.run(run(PROFILES[args.profile], seed, args.out))


if __name__ == "__main__":
    sys.exit(main())
