"""One chaos run, start to end: start the cluster, open accounts, drive the load while the
nemeses strike, then quiescence (faults over, everything healed, requests finished, webhooks
delivered and settled, pending charges resolved), gather the facts, check them, report.
A failed run keeps its logs and a dump of the database in its folder."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from chaos import checks, facts, report
from chaos.callers import Caller
from chaos.cluster import API_KEY, Cluster
from chaos.load import Load
from chaos.nemesis import NEEDS_OWN_POSTGRES, NEEDS_OWN_REDIS, Kind, Nemeses, schedule
from chaos.postgres import dump
from chaos.profiles import Profile

_SETTLE_POLL_SECONDS = 3.0
_RECONCILE_ATTEMPTS_MAX = 10


def _kinds(cluster: Cluster) -> tuple[list[Kind], list[str]]:
    """The fault kinds this run can strike, and why any are skipped."""
    skipped: set[Kind] = set()
    notes: list[str] = []
    if cluster.postgres is None:
        skipped |= NEEDS_OWN_POSTGRES
        notes.append("PostgreSQL given by GATEWAY_CHAOS_DATABASE_URL: not crashed")
    if cluster.redis is None:
        skipped |= NEEDS_OWN_REDIS
        notes.append("Redis given by GATEWAY_CHAOS_REDIS_URL: not made read-only, flushed, killed")
    return [kind for kind in Kind if kind not in skipped], notes


async def _settled(cluster: Cluster, accounts: list[str], deadline: float) -> facts.Facts:
    """Poll until the processor has settled its async charges and delivered every webhook,
    our inbox is empty and no charge of ours is pending that the processor has finished (or
    until `deadline`)."""
    while True:
        try:
            waiting = await _webhooks_waiting(cluster)
            gathered = await _gather(cluster, accounts)
        except httpx.HTTPError:  # a process still starting: ask again
            waiting = 1
        else:
            pending = [a for a in checks.statuses(gathered) if a.kind == "pending_while_final"]
            waiting += len(pending)
            waiting += sum(c["status"] == "pending" for c in gathered.processor_charges)
        if not waiting or time.monotonic() > deadline:
            return await _gather(cluster, accounts)
        await asyncio.sleep(_SETTLE_POLL_SECONDS)


async def _webhooks_waiting(cluster: Cluster) -> int:
    async with httpx.AsyncClient(timeout=10.0) as http:
        health = (await http.get(f"{cluster.sandbox_url}/_sandbox/health")).json()
        inbox = await http.get(
            f"{cluster.api_url}/v1/webhook-events",
            params={"status": "pending", "limit": "100"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
    return int(health["webhooks_pending"]) + len(inbox.json()["data"])


async def _gather(cluster: Cluster, accounts: list[str]) -> facts.Facts:
    charges, refunds, disputes = await facts.at_processor(cluster.sandbox_url)
    ours, balances = await facts.ours(cluster.api_url, API_KEY, accounts)
    return facts.Facts(charges, refunds, disputes, ours, balances)


async def _reconcile(cluster: Cluster) -> dict[str, Any]:
    """One healing reconciliation run over the whole run, as an operator would after an
    incident (the service's own loop runs one every minute as well): a webhook the processor
    gave up delivering while the service was down is healed here, and counted."""
    env = {**cluster.environment(direct=True), "GATEWAY_LOG_LEVEL": "warning"}
    argv = ("reconcile", "--provider", "sandbox", "--heal", "--format", "json")
    for _ in range(_RECONCILE_ATTEMPTS_MAX):
        code, out = await facts.run_command(env, *argv)
        start = out.find("{")
        if code != 2 and start >= 0:  # 2: a fault (another run in progress, say): again
            report: dict[str, Any] = json.loads(out[start:])
            return {"exit_status": code, "counts": report.get("counts", {})}
        await asyncio.sleep(_SETTLE_POLL_SECONDS)
    return {"exit_status": 2, "counts": {}}


async def _ledger(cluster: Cluster) -> tuple[bool, dict[str, Any]]:
    env = {**cluster.environment(direct=True), "GATEWAY_LOG_LEVEL": "warning"}
    code, out = await facts.run_command(env, "check-ledger", "--full")
    start = out.find("{")
    parsed: dict[str, Any] = json.loads(out[start:]) if start >= 0 else {"output": out}
    return code == 0, parsed


async def _drive(cluster: Cluster, profile: Profile, seed: int) -> dict[str, Any]:
    """Load and faults, then quiescence; what the report needs besides the facts."""
    kinds, notes = _kinds(cluster)
    plan = schedule(seed, profile, kinds, profile.workers)
    nemeses = Nemeses(cluster, plan)
    caller = Caller(cluster.api_url, API_KEY, random.Random(f"backoff-{seed}"))
    accounts = [f"acct_chaos_{n}" for n in range(profile.accounts)]
    loads = [
        Load(caller, cluster.sandbox_url, accounts, random.Random(f"load-{seed}-{n}"), name=f"c{n}")
        for n in range(profile.clients)
    ]
    await loads[0].open_accounts()
    until = time.monotonic() + profile.faults_seconds
    striking = asyncio.create_task(nemeses.run())
    callers = [asyncio.create_task(load.run(until)) for load in loads]
    await asyncio.sleep(profile.faults_seconds)
    requests = [r for load in loads for r in load.requests]
    in_flight = sum(1 for r in requests if r.status is None)
    await striking
    await cluster.heal()
    quiet_until = time.monotonic() + profile.quiescence_seconds_max
    caller.give_up_at = quiet_until
    await asyncio.gather(*callers)
    await caller.close()
    await _settled(cluster, accounts, quiet_until)
    reconciliation = await _reconcile(cluster)
    gathered = await _settled(cluster, accounts, time.monotonic() + profile.quiescence_seconds_max)
    gathered.requests = [r.as_fact() for load in loads for r in load.requests]
    gathered.ledger_balanced, gathered.ledger_report = await _ledger(cluster)
    return {
        "facts": gathered,
        "struck": nemeses.struck,
        "notes": notes,
        "in_flight_when_faults_ended": in_flight,
        "disputes_closed_at_processor": sum(load.disputes_closed for load in loads),
        "reconciliation_after_faults": reconciliation,
        "restarts_after_exit": dict(cluster.restarts),
    }


async def run(profile: Profile, seed: int, out_dir: Path) -> int:
    """One run; exit status 0 when every check passed, 1 on any anomaly."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = (out_dir / f"{stamp}-{profile.name}-seed{seed}").resolve()
    run_dir.mkdir(parents=True)
    print(f"chaos: profile {profile.name}, seed {seed}, run folder {run_dir}", flush=True)
    started = time.monotonic()
    cluster = Cluster(profile, run_dir)
    keeper: asyncio.Task[None] | None = None
    try:
        await cluster.start()
        keeper = asyncio.create_task(cluster.keep_running())
        outcome = await _drive(cluster, profile, seed)
        gathered: facts.Facts = outcome.pop("facts")
        anomalies = checks.check(gathered)
        summary = report.summarize(
            header={
                "profile": profile.name,
                "seed": seed,
                "duration_seconds": round(time.monotonic() - started, 1),
            },
            struck=outcome.pop("struck"),
            facts=gathered,
            anomalies=anomalies,
            extra=outcome,
        )
        report.write(summary, run_dir)
        (run_dir / "facts.json").write_text(json.dumps(gathered.as_dict()))
        if anomalies:
            await dump(cluster.database_url, run_dir / "database.sql")
    finally:
        if keeper is not None:
            keeper.cancel()
        await cluster.stop()
        if cluster.postgres is not None:
            shutil.copy(cluster.postgres.log_path, run_dir / "postgres.log")
            cluster.postgres.remove()
    print(report.table(summary), flush=True)
    if anomalies:
        print(f"\nFAILED: logs, facts and a database dump kept in {run_dir}", flush=True)
        return 1
    _tidy(run_dir)
    print(f"\npassed: report in {run_dir / 'report.json'}", flush=True)
    return 0


def _tidy(run_dir: Path) -> None:
    """A passing run keeps its report and nothing bulky."""
    for path in run_dir.iterdir():
        if path.name != "report.json":
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
