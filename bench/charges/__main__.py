"""`python -m bench.charges`: the whole charges bench, or with `bare PORT DB_URL SANDBOX_URL
CLIENT` the bare endpoint alone (the bench starts it so, as a process of its own)."""

from __future__ import annotations

import sys

from bench.charges import main
from bench.charges.bare import run_bare
from bench.support import run


def _cli(argv: list[str]) -> None:
    if len(argv) == 5 and argv[0] == "bare":
        run_bare(int(argv[1]), argv[2], argv[3], argv[4])
        return
    run(main())


if __name__ == "__main__":
    _cli(sys.argv[1:])
