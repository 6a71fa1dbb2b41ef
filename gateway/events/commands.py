"""`gateway events replay --endpoint ID --since ISO8601`: queue again every event an endpoint
subscribes to since a moment (after an outage of the receiver, or for a new consumer), with
progress on stderr; the worker delivers them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import raw_connection
from gateway.errors import NotFound
from gateway.events import history


def register(sub: Any, func: Callable[..., int]) -> None:
    """Add the `events` subcommand to the CLI's subparsers; `func` runs it."""
    parser: argparse.ArgumentParser = sub.add_parser("events", help="events sent to endpoints")
    actions = parser.add_subparsers(dest="action", required=True)
    replay = actions.add_parser("replay", help="queue an endpoint's events since a moment again")
    replay.add_argument("--endpoint", required=True, metavar="ID")
    replay.add_argument("--since", required=True, type=_moment, metavar="ISO8601")
    parser.set_defaults(func=func)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def run(engine: AsyncEngine, args: argparse.Namespace) -> int:
    def progress(done: int, total: int) -> None:
        print(f"queued {done} of {total}", file=sys.stderr, flush=True)

    try:
        async with raw_connection(engine) as conn:
            queued = await history.replay(conn, args.endpoint, args.since, progress)
    except NotFound as exc:
        print(exc.message, file=sys.stderr)
        return 1
    print(f"{queued} events queued for {args.endpoint} since {args.since.isoformat()}")
    return 0
