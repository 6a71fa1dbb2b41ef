"""`python -m bench.usage [--records-max N]`: the usage bench, with the growth part going up
to N records (default 10^6; 10^7 fills for some minutes on a small machine)."""

from __future__ import annotations

import argparse

from bench.support import run
from bench.usage import RECORDS_MAX, main


def _cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.usage", description=__doc__)
    parser.add_argument(
        "--records-max",
        type=int,
        default=RECORDS_MAX,
        metavar="N",
        help=f"the largest table the growth part measures (default {RECORDS_MAX:,})",
    )
    run(main(parser.parse_args().records_max))


if __name__ == "__main__":
    _cli()
