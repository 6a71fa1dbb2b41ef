"""Events out.

- Deliveries per second: 20,000 events queued for one endpoint, a local receiver (an aiohttp
  server in a process of its own, answering 200), drained by one `gateway worker` (claims,
  signed posts, group-committed attempt records). Beside it, the same run's baseline: a bare
  aiohttp client posting the same signed body to the same receiver at the same concurrency,
  with no database: what the receiver and an HTTP client alone reach on this machine.
- The CPU the outbox adds to a charge: `gateway serve` charging through the sandbox at
  concurrency 64 (the charges bench's database and load), as shipped, against the same-run
  baseline of the same server with the outbox taken out (`gateway-serve-without-outbox`: no
  charge change announces anything, so no event is built or written), and once more with an
  endpoint subscribed to every event, so each charge's event is also delivered by the serve
  process's own worker. Two rounds; each variant's lower CPU per charge is compared.

`python -m bench.events receiver PORT` and `python -m bench.events gateway-serve-without-outbox`
are the processes the bench starts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench.charges.load import classify as charge_classify
from bench.charges.load import load
from bench.charges.phases import API_KEY, sandbox_running, serve_env
from bench.charges.seed import prepared_database
from bench.cpu import CpuMeter, CpuUse
from bench.support import Figure, fresh_database, report
from gateway import limits
from gateway.events import signing
from providers.sandbox.signing import generate_secret
from tests.support.service import GATEWAY, free_port

EVENTS = 20_000
# The worker's attempts in flight per endpoint (its limit), and the baseline's.
CONCURRENCY = limits.EVENT_DELIVERY_ENDPOINT_CONCURRENCY_MAX
ROUNDS = 2
CHARGE = json.dumps(
    {
        "id": "ch_01a2437f89333fa008295a2541d4b523",
        "object": "charge",
        "account_id": "acct_1",
        "amount": 100,
        "currency": "USD",
        "status": "succeeded",
        "provider": "sandbox",
        "provider_charge_id": "ch_sb_b527f994450fed82035ad839",
        "payment_method": "pm_card_visa",
        "amount_refunded": 0,
        "failure_code": None,
        "failure_message": None,
        "description": None,
        "metadata": {},
        "created_at": "2026-12-04T23:59:21.391769Z",
        "updated_at": "2026-12-04T23:59:21.406208Z",
    },
    separators=(",", ":"),
)


def classify(comm: str, cmdline: str) -> str | None:
    """The groups the deliveries bench reports. PostgreSQL is the backends of this bench's
    own databases: on a shared machine, other databases' backends are someone else's load."""
    if comm == "postgres":
        ours = any(f" {name} " in cmdline for name in ("bench_events", "bench_charges"))
        return "postgres" if ours else "other postgres"
    if "bench.events receiver" in cmdline:
        return "receiver"
    if "gateway" in cmdline and ("worker" in cmdline or "serve" in cmdline):
        return "gateway"
    if "-m bench" in cmdline:
        return "bench client"
    return None


# -- the processes the bench starts ---------------------------------------------------------


def run_receiver(port: int) -> None:
    """Answer every delivery 200 after reading it, as a consumer would."""

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/events", receive)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_without_outbox() -> None:
    """`gateway serve` with the outbox taken out: settlement's changes announce nothing."""
    from gateway.cli import main
    from gateway.settlement import announcements

    def announce_nothing(*_: object) -> list[announcements.Change]:
        return []

    # The bench's own process: replacing the function here is the whole point of the mode.
    setattr(announcements, "changes", announce_nothing)  # noqa: B010
    sys.exit(main(["serve"]))


@asynccontextmanager
async def started(
    argv: Sequence[str], env: dict[str, str], log: Path, ready_url: str
) -> AsyncIterator[None]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            *argv, env=environment | env, stdout=out, stderr=out
        )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(ready_url) as answer:
                        if answer.status < 500:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise TimeoutError(f"{argv} never answered {ready_url}")
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


@asynccontextmanager
async def receiver_running(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.events", "receiver", str(port)]
    url = f"http://127.0.0.1:{port}/events"
    async with started(argv, {}, tmp_path / "receiver.log", url):
        yield url


# -- deliveries per second ------------------------------------------------------------------


async def bare_posts(url: str, count: int) -> Figure:
    """The baseline: signed posts of the same body at the same concurrency, no database."""
    secret = generate_secret()
    body = CHARGE.encode()
    meter = CpuMeter(classify)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as http:
        queue = iter(range(count))

        async def client() -> None:
            for n in queue:
                headers = signing.headers([secret], f"evt_{n}", int(time.time()), body)
                async with http.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    answer.raise_for_status()

        meter.start()
        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - began
        use = meter.use(count)
    name = f"baseline: bare aiohttp client -> receiver, {CONCURRENCY} in flight"
    return _figure(name, count, elapsed, use)


async def worker_deliveries(tmp_path: Path, receiver_url: str) -> Figure:
    """`gateway worker` draining `EVENTS` deliveries to the receiver."""
    db_url = await fresh_database("bench_events")
    conn = await asyncpg.connect(db_url)
    try:
        endpoint = await conn.fetchval(
            "INSERT INTO webhook_endpoints (url, enabled_events, secret) "
            "VALUES ($1, '{*}', $2) RETURNING id",
            receiver_url,
            generate_secret(),
        )
        await conn.execute(
            "INSERT INTO events (type, object_id, object) "
            "SELECT 'charge.succeeded', 'ch_' || g, $1::json FROM generate_series(1, $2) g",
            CHARGE,
            EVENTS,
        )
        await conn.execute("VACUUM ANALYZE")
        port = free_port()
        env = {
            "GATEWAY_DATABASE_URL": db_url,
            "GATEWAY_WORKER_PORT": str(port),
            "GATEWAY_DATA_DIR": str(tmp_path / "worker"),
            "GATEWAY_LOG_LEVEL": "warning",
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_WEBHOOK_ALLOW_PRIVATE_URLS": "true",
        }
        ready = f"http://127.0.0.1:{port}/readyz"
        async with started([str(GATEWAY), "worker"], env, tmp_path / "worker.log", ready):
            meter = CpuMeter(classify)
            meter.start()
            began = time.perf_counter()
            await conn.execute(
                "INSERT INTO event_deliveries (event_id, endpoint_id, queued_at) "
                "SELECT id, $1, created_at FROM events",
                endpoint,
            )
            await _until_delivered(conn, EVENTS)
            elapsed = time.perf_counter() - began
            use = meter.use(EVENTS)  # while the worker and its connections still run
    finally:
        await conn.close()
    name = "gateway worker -> receiver (claim, sign, post, record)"
    return _figure(name, EVENTS, elapsed, use)


def _figure(name: str, count: int, elapsed: float, use: CpuUse | None) -> Figure:
    if use is None:
        return Figure(name, count, elapsed)
    return Figure(name, count, elapsed, note=use.describe(), cpu_ms=use.ms_per_op)


async def _until_delivered(conn: asyncpg.Connection[Any], count: int) -> None:
    query = "SELECT count(*) FROM event_deliveries WHERE status = 'delivered'"
    while True:
        if await conn.fetchval(query) >= count:
            return
        await asyncio.sleep(0.1)


# -- the CPU the outbox adds to a charge ----------------------------------------------------


def charge_groups(comm: str, cmdline: str) -> str | None:
    """The charges bench's groups, PostgreSQL counted as the deliveries bench counts it."""
    if comm == "postgres":
        return classify(comm, cmdline)
    return charge_classify(comm, cmdline)


async def charges(
    tmp_path: Path, db_url: str, sandbox_url: str, argv: Sequence[str], name: str
) -> Figure:
    port = free_port()
    env = serve_env(tmp_path, db_url, sandbox_url, port)
    env["GATEWAY_WEBHOOK_ALLOW_PRIVATE_URLS"] = "true"  # the receiver is on loopback
    base = f"http://127.0.0.1:{port}"
    async with started(argv, env, tmp_path / "serve.log", f"{base}/readyz"):
        headers = {"Authorization": f"Bearer {API_KEY}"}
        return await load(f"{base}/v1/charges", 64, headers, name, db_url, charge_groups)


async def outbox_cost(tmp_path: Path, receiver_url: str) -> list[Figure]:
    """Each round: the baseline, the outbox with no endpoint, then with one subscribed."""
    db_url = await prepared_database()
    without = [sys.executable, "-m", "bench.events", "gateway-serve-without-outbox"]
    shipped = [str(GATEWAY), "serve"]
    variants = [
        (without, False, "baseline: outbox taken out"),
        (shipped, False, "outbox, no endpoint"),
        (shipped, True, "outbox + every event delivered"),
    ]
    figures: list[Figure] = []
    conn = await asyncpg.connect(db_url)
    try:
        async with sandbox_running(tmp_path) as sandbox_url:
            for round_ in range(1, ROUNDS + 1):
                for argv, subscribed, variant in variants:
                    await conn.execute("DELETE FROM webhook_endpoints")
                    if subscribed:
                        await conn.execute(
                            "INSERT INTO webhook_endpoints (url, enabled_events, secret) "
                            "VALUES ($1, '{*}', $2)",
                            receiver_url,
                            generate_secret(),
                        )
                    name = f"{variant}, concurrency 64 (round {round_})"
                    figures.append(await charges(tmp_path, db_url, sandbox_url, argv, name))
    finally:
        await conn.close()
    return figures


def _service_cpu(figure: Figure) -> float:
    """CPU per charge of what the outbox can add to: the gateway and PostgreSQL."""
    return figure.cpu_ms.get("gateway", 0.0) + figure.cpu_ms.get("postgres", 0.0)


def _print_ratios(deliveries: list[Figure], costs: list[Figure]) -> None:
    worker, bare = deliveries
    print(
        f"  deliveries/s: gateway worker {worker.per_second:,.0f}/s, baseline "
        f"{bare.per_second:,.0f}/s, ratio {worker.per_second / bare.per_second:.2f}"
    )
    best: dict[str, float] = {}
    for figure in costs:
        variant = figure.name.split(",", 1)[0]
        cpu = _service_cpu(figure)
        if cpu and (variant not in best or cpu < best[variant]):
            best[variant] = cpu
    base = best.get("baseline: outbox taken out")
    if not base:
        print("  (no CPU figures: not Linux)")
        return
    for variant, cpu in best.items():
        print(
            f"  gateway + PostgreSQL CPU per charge, {variant}: {cpu:.3f} ms "
            f"({(cpu / base - 1) * 100:+.1f} % over the baseline)"
        )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        async with receiver_running(tmp_path) as receiver_url:
            deliveries = [
                await worker_deliveries(tmp_path, receiver_url),
                await bare_posts(receiver_url, EVENTS),
            ]
            costs = await outbox_cost(tmp_path, receiver_url)
    report("Events out: deliveries to a local receiver, and the outbox's cost", deliveries + costs)
    _print_ratios(deliveries, costs)


def _cli(argv: list[str]) -> None:
    from bench.support import run

    if len(argv) == 2 and argv[0] == "receiver":
        run_receiver(int(argv[1]))
    elif argv == ["gateway-serve-without-outbox"]:
        serve_without_outbox()
    else:
        run(main())


if __name__ == "__main__":
    _cli(sys.argv[1:])
