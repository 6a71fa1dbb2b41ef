"""`gateway keys create|list|rotate|revoke`: key administration from the command line, printing
the same JSON as `/v1/api-keys`. A new key's secret is printed this once; nothing can show it
again. Changes are audited with the operator's login name as the actor."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.errors import DomainError
from gateway.keys import service
from gateway.keys.audit import Actor
from gateway.keys.model import (
    ROTATION_OVERLAP_DEFAULT,
    parse_duration,
    parse_optional_duration,
    parse_rate_limit,
)
from gateway.keys.scopes import UnknownScope, parse_scopes
from gateway.keys.tokens import Environment


def register(sub: Any, func: Callable[..., int]) -> None:
    """Add the `keys` subcommand to the CLI's subparsers; `func` runs it."""
    parser: argparse.ArgumentParser = sub.add_parser("keys", help="administer API keys")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new key for a caller (its secret shown once)")
    create.add_argument("--caller", required=True, help="the caller's name, e.g. billing")
    create.add_argument("--scopes", required=True, help="comma-separated, e.g. charges:write")
    create.add_argument("--expires-in", metavar="DURATION", help="e.g. 90d (default: never)")
    create.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="CLASS=QUOTA/WINDOW",
        help="override a default limit, e.g. money=600/60s (repeatable)",
    )
    listing = actions.add_parser("list", help="keys, newest first (never their secrets)")
    listing.add_argument("--caller", help="only this caller's keys")
    listing.add_argument("--limit", type=int, default=limits.PAGE_LIMIT_MAX)
    listing.add_argument("--starting-after", metavar="KEY_ID")
    rotate = actions.add_parser("rotate", help="a new secret; the old one works a while longer")
    rotate.add_argument("key_id")
    rotate.add_argument("--overlap", default=ROTATION_OVERLAP_DEFAULT, metavar="DURATION")
    rotate.add_argument("--expires-in", metavar="DURATION", help="default: the old key's lifetime")
    actions.add_parser("revoke", help="refuse a key from now on").add_argument("key_id")
    parser.set_defaults(func=func)


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"


async def _act(
    engine: AsyncEngine, args: argparse.Namespace, environment: Environment
) -> dict[str, Any]:
    actor = Actor(None, _operator(), None)
    if args.action == "create":
        request = service.KeyRequest(
            caller=args.caller,
            scopes=parse_scopes(s for s in args.scopes.split(",") if s.strip()),
            expires_in=parse_optional_duration(args.expires_in, param="--expires-in"),
            rate_limits=dict(parse_rate_limit(r, param="--rate-limit") for r in args.rate_limit),
        )
        made = await service.create_key(engine, request, environment=environment, actor=actor)
        return made.public()
    if args.action == "rotate":
        made = await service.rotate_key(
            engine,
            args.key_id,
            overlap=parse_duration(args.overlap, param="--overlap"),
            expires_in=parse_optional_duration(args.expires_in, param="--expires-in"),
            actor=actor,
        )
        return made.public()
    if args.action == "revoke":
        return (await service.revoke_key(engine, args.key_id, actor=actor)).public(service.now())
    if not 1 <= args.limit <= limits.PAGE_LIMIT_MAX:
        raise DomainError("parameter_invalid", f"--limit must be 1 to {limits.PAGE_LIMIT_MAX}")
    keys, has_more = await service.list_keys(
        engine, limit=args.limit, starting_after=args.starting_after, caller=args.caller
    )
    moment = service.now()
    return {"object": "list", "data": [k.public(moment) for k in keys], "has_more": has_more}


async def run(engine: AsyncEngine, args: argparse.Namespace, environment: Environment) -> int:
    try:
        result = await _act(engine, args, environment)
    except (DomainError, UnknownScope) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    if "secret" in result:
        print("The secret is shown once: store it now.", file=sys.stderr)
    return 0
