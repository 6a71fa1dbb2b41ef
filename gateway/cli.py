"""The `gateway` command line: `serve` (API, webhooks and workers in one process), `worker`
(workers only), `migrate`, and operator commands."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from aiohttp import web
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits, migrate
from gateway.api import server
from gateway.app import create_app
from gateway.db import create_engine, raw_connection
from gateway.embedded_pg import embedded_postgres
from gateway.events import commands as event_commands
from gateway.keys import cli as keys_cli
from gateway.ledger.check import check_ledger
from gateway.logs import configure_logging
from gateway.metrics import share_between_processes
from gateway.reconciliation import command as reconcile_command
from gateway.settings import Settings
from gateway.state import Role
from providers.sandbox.server import serve_forever
from webhooks import commands as webhook_commands


def _dev_api_key(data_dir: Path) -> str:
    """A development key kept under the data dir, so restarts keep the same key. It is a
    bootstrap key: a caller named `bootstrap`, with every scope."""
    path = data_dir / "dev-api-key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = "sk_dev_" + secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _with_dev_key(settings: Settings) -> Settings:
    if settings.api_keys:
        return settings
    key = _dev_api_key(settings.data_dir)
    print(
        f"\n  GATEWAY_API_KEYS is not set: using the development key\n\n    {key}\n\n"
        f"  (kept in {settings.data_dir / 'dev-api-key'}; set GATEWAY_API_KEYS in production)\n",
        file=sys.stderr,
        flush=True,
    )
    return settings.model_copy(update={"api_keys": (SecretStr(key),)})


def _event_loop() -> asyncio.AbstractEventLoop | None:
    """uvloop where it is installed (a dependency off Windows), else the stock loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stock loop still works
        return None
    return uvloop.new_event_loop()


def _settle_heap() -> None:
    """Before serving: move everything loaded so far (modules, the app) out of the cyclic
    garbage collector's reach, and collect the young generation less often. A charge
    allocates thousands of short-lived containers, so the default (a collection every 700
    allocations, each older generation every 10 of the younger) spent ~4 % of the serve
    process's CPU tracing long-lived objects that never become garbage."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*limits.GC_THRESHOLDS)


def _run(app: web.Application, host: str, port: int, *, reuse_port: bool = False) -> None:
    _settle_heap()
    server.run(app, host, port, reuse_port=reuse_port, loop=_event_loop())


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if settings.processes > 1:  # the first of several (copies are told processes=1)
        share_between_processes(settings.data_dir)
    settings = _with_dev_key(settings)
    print(f"  serving on http://{settings.host}:{settings.port}", file=sys.stderr, flush=True)
    shared_port = settings.processes > 1 or settings.parent_pid is not None
    _run(create_app(settings, Role.SERVE), settings.host, settings.port, reuse_port=shared_port)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    _run(create_app(settings, Role.WORKER), settings.host, settings.worker_port)
    return 0


@asynccontextmanager
async def _engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A one-connection engine on the configured (or embedded) database, for a command."""
    async with AsyncExitStack() as stack:
        if settings.database_url is not None:
            url = settings.database_url.get_secret_value()
        else:
            url = await stack.enter_async_context(embedded_postgres(settings.data_dir))
        engine = create_engine(url, pool_size=1)
        stack.push_async_callback(engine.dispose)
        yield engine


async def _migrate(settings: Settings) -> None:
    async with _engine(settings) as engine:
        await migrate.upgrade(engine)
        print(f"database at revision {await migrate.current_revision(engine)}")


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(_migrate(settings))
    return 0


def _show_progress(stage: str, done: int, total: int) -> None:
    """The ledger check's progress, on one line of a terminal."""
    sys.stderr.write(f"\r  checking {stage:<12} page {done:,} of {total:,}   ")
    sys.stderr.flush()


async def _check_ledger(settings: Settings, *, full: bool) -> bool:
    shown = sys.stderr.isatty()
    async with _engine(settings) as engine, raw_connection(engine) as conn:
        report = await check_ledger(
            conn, full=full, save=True, progress=_show_progress if shown else _no_progress
        )
    if shown:
        sys.stderr.write("\n")
    print(json.dumps({**report.as_dict(), "scope": report.scope}, indent=2))
    return report.balanced


def _no_progress(stage: str, done: int, total: int) -> None:
    """Not on a terminal: nothing to draw."""


def cmd_check_ledger(settings: Settings, args: argparse.Namespace) -> int:
    """Exit status 0 when the ledger balances, 1 when it reports problems. Incremental (what
    was written since the last clean check), `--full` to verify everything."""
    return 0 if asyncio.run(_check_ledger(settings, full=args.full)) else 1


def cmd_sandbox(settings: Settings, args: argparse.Namespace) -> int:
    # The sandbox keeps every charge it made in memory, so each full collection walked a
    # larger heap: a 98 ms pause of every charge in flight with ~17,000 held, and growing.
    _settle_heap()
    serve_forever(loop=_event_loop())
    return 0


def _on_database(settings: Settings, work: Callable[[AsyncEngine], Awaitable[int]]) -> int:
    """Run an operator command's `work` on the configured (or embedded) database."""

    async def run() -> int:
        async with _engine(settings) as engine:
            return await work(engine)

    return asyncio.run(run())


def cmd_webhooks(settings: Settings, args: argparse.Namespace) -> int:
    return _on_database(settings, lambda engine: webhook_commands.run(engine, args))


def cmd_events(settings: Settings, args: argparse.Namespace) -> int:
    return _on_database(settings, lambda engine: event_commands.run(engine, args))


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    return _on_database(
        settings, lambda engine: keys_cli.run(engine, args, settings.api_key_environment)
    )


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    return _on_database(settings, lambda engine: reconcile_command.run(engine, settings, args))


Command = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="API, webhooks and workers in one process").set_defaults(
        func=cmd_serve
    )
    sub.add_parser("worker", help="background workers only (scale out)").set_defaults(
        func=cmd_worker
    )
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(
        func=cmd_migrate
    )
    sub.add_parser("sandbox", help="a standalone sandbox processor").set_defaults(func=cmd_sandbox)
    ledger = sub.add_parser("check-ledger", help="run the ledger's invariants now")
    ledger.add_argument(
        "--full", action="store_true", help="verify everything, not only what is new"
    )
    ledger.set_defaults(func=cmd_check_ledger)
    webhook_commands.register(sub, cmd_webhooks)
    event_commands.register(sub, cmd_events)
    keys_cli.register(sub, cmd_keys)
    reconcile_command.register(sub, cmd_reconcile)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    several = settings.processes > 1 or settings.parent_pid is not None
    configure_logging(
        settings.log_format, settings.log_level, process=settings.process_index if several else None
    )
    func: Command = args.func
    return func(settings, args)


if __name__ == "__main__":
    sys.exit(main())
