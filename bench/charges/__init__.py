"""Charges per second and latency, end to end over HTTP: `gateway serve` charging through a
standalone sandbox processor (both real subprocesses), at concurrency 1 and 64 (closed loop:
each client sends its next charge when the last is answered), as one process and as two
(`GATEWAY_PROCESSES=2`), and at fixed arrival rates (open loop, at most 64 in flight, latency
counted from when each charge was due, so a stall is not hidden by clients that wait), beside

- the sandbox alone (the processor's own ceiling on this machine), and
- a bare aiohttp endpoint (`python -m bench.charges bare …`) making the same processor call
  (once with the gateway's shared client, `providers.http.create_client()`, once with
  aiohttp's client alone)
  and the same statements per charge as the gateway's charge path (the key+charge statement;
  then one transaction: lock the charge reading its ledger accounts, post the ledger
  transaction with its entries and balance, update the charge, store the response), with
  none of the gateway's code around them,

so the gateway's own overhead shows as a ratio. The bare endpoint gives every charge its own
finishing transaction; the gateway shares one among the finishes waiting together (group
commit, `gateway.charges.finisher`), so under load it can outrun the bare endpoint. Every
charge has its own idempotency key and pays with `pm_card_visa`; customers are spread over
many accounts, as in production. Each run starts on a vacuumed, analyzed database. Under
each figure: the CPU each process group spent per charge (on a machine shared by the service,
its database, the processor and the load generator, throughput is bounded by their sum)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.charges.phases import measure_bare, measure_gateway, measure_sandbox, sandbox_running
from bench.charges.seed import prepared_database
from bench.support import Figure, report


async def main() -> None:
    db_url = await prepared_database()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        async with sandbox_running(tmp_path) as sandbox_url:
            figures += await measure_sandbox(sandbox_url)
            figures += await measure_gateway(tmp_path, db_url, sandbox_url, processes=1)
            figures += await measure_gateway(tmp_path, db_url, sandbox_url, processes=2)
            figures += await measure_bare(tmp_path, db_url, sandbox_url, "httpx")
            figures += await measure_bare(tmp_path, db_url, sandbox_url, "aiohttp")
    report("Charges: end to end over HTTP against the sandbox processor", figures)
    _print_ratios(figures)


def _print_ratios(figures: list[Figure]) -> None:
    """The bare endpoints' throughput over the gateway's (one process), per concurrency."""
    by_name = {
        f.name.rsplit(" (", 1)[0] if f.name.endswith("failed)") else f.name: f for f in figures
    }
    for concurrency in (1, 64):
        gateway = by_name.get(f"gateway (1 process), concurrency {concurrency}")
        for client in ("httpx", "aiohttp"):
            bare = by_name.get(f"bare endpoint ({client}), concurrency {concurrency}")
            if gateway and bare and gateway.per_second:
                print(
                    f"  concurrency {concurrency}: bare endpoint ({client}) / gateway "
                    f"throughput {bare.per_second / gateway.per_second:.2f}x"
                )
