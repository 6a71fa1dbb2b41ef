"""`gateway webhooks list|show|replay`: the operators' inbox API from the command line,
printing the same JSON the HTTP API returns."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from webhooks import operations


def register(sub: Any, func: Callable[..., int]) -> None:
    """Add the `webhooks` subcommand to the CLI's subparsers; `func` runs it."""
    parser: argparse.ArgumentParser = sub.add_parser("webhooks", help="operate the webhook inbox")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="inbox events, newest first")
    listing.add_argument("--status", choices=[s.value for s in operations.InboxStatus])
    listing.add_argument("--limit", type=int, default=limits.PAGE_LIMIT_DEFAULT)
    listing.add_argument("--starting-after", metavar="ID")
    actions.add_parser("show", help="one event with its body").add_argument("id")
    actions.add_parser("replay", help="send an event back to the worker").add_argument("id")
    parser.set_defaults(func=func)


async def run(engine: AsyncEngine, args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            if not 1 <= args.limit <= limits.PAGE_LIMIT_MAX:
                print(f"--limit must be 1 to {limits.PAGE_LIMIT_MAX}", file=sys.stderr)
                return 2
            status = operations.InboxStatus(args.status) if args.status else None
            result = await operations.list_events(
                engine, status=status, limit=args.limit, starting_after=args.starting_after
            )
        elif args.action == "show":
            result = await operations.get_event(engine, args.id)
        else:
            result = await operations.replay(engine, args.id)
    except operations.UnknownEvent as exc:
        print(f"no such webhook event: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0
