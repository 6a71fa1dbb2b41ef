"""`gateway reconcile --provider NAME [--since T] [--until T] [--heal] [--format table|json]
[--report PATH ...]`: one run, executed here, then its report. A run of the provider that a
dead process left unfinished is resumed first. A provider without a list API (Adyen) is read
from its report files (`--report`, repeated for several; `report_source`), and only this
command resumes its runs, given the same files.

Exit status: 0 when nothing is left unhealed, 1 when differences are left for an operator,
2 on a fault (a bad argument, the processor or the database unreachable, another process's
run of the provider still running)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import raw_connection
from gateway.errors import DomainError
from gateway.processors import service_url
from gateway.reconciliation import report, service, store
from gateway.reconciliation.report_source import ReportSource
from gateway.reconciliation.run import execute, execute_new
from gateway.reconciliation.sources import RecordSource
from gateway.settings import Settings
from providers import http, registry
from providers.base import ProviderContext, ProviderError
from providers.registry import ProviderSet

FAULT = 2


def _time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def register(sub: Any, func: Callable[..., int]) -> None:
    """Add `reconcile` to the CLI's subparsers; `func` runs it."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "reconcile", help="compare our books with a processor's records and the ledger"
    )
    parser.add_argument("--provider", required=True)
    parser.add_argument("--since", type=_time, help="ISO 8601 with an offset (default: a day ago)")
    parser.add_argument("--until", type=_time, help="ISO 8601 with an offset (default: now)")
    parser.add_argument("--heal", action="store_true", help="heal what is safe to heal")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument(
        "--report",
        type=Path,
        action="append",
        metavar="PATH",
        help="a settlement report to read the processor's records from (Adyen); repeatable",
    )
    parser.set_defaults(func=func)


@asynccontextmanager
async def _providers(settings: Settings) -> AsyncIterator[ProviderSet]:
    """The providers configured here, as the service builds them."""
    client = http.create_client()
    try:
        context = ProviderContext(client, settings.data_dir, service_url(settings))
        providers = registry.build(context)
        try:
            yield providers
        finally:
            await providers.aclose()
    finally:
        await client.aclose()


async def run(engine: AsyncEngine, settings: Settings, args: argparse.Namespace) -> int:
    async with _providers(settings) as providers:
        progress = report.ProgressLine()
        try:
            reports: list[Path] = args.report or []
            if reports:
                provider = service.report_provider(providers, args.provider)
            else:
                provider = service.listing_provider(providers, args.provider)

            def source(since: datetime, until: datetime) -> RecordSource | None:
                """The reports, read over a run's window; None: the provider's lists."""
                return ReportSource(provider, reports, since, until) if reports else None

            since, until = service.window(args.since, args.until)
            async with raw_connection(engine) as conn:
                left = [r for r in await store.running(conn) if r.provider == provider.name]
            for unfinished in left:
                print(f"resuming run {unfinished.id}, left unfinished", file=sys.stderr)
                resumed = source(unfinished.since, unfinished.until)
                await execute(engine, provider, unfinished.id, source=resumed, progress=progress)
            ended = await execute_new(
                engine,
                provider,
                (since, until),
                heal=args.heal,
                trigger=store.Trigger.COMMAND,
                source=source(since, until),
                progress=progress,
            )
        except (DomainError, ProviderError, asyncpg.PostgresError, OSError) as exc:
            progress.done()
            print(f"reconcile: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
            return FAULT
        progress.done()
        async with raw_connection(engine) as conn:
            write = report.write_json if args.format == "json" else report.write_table
            await write(conn, ended, sys.stdout)
    return 0 if ended.counts.get("unhealed", 0) == 0 else 1
