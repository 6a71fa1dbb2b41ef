"""The nemeses: every kind of fault, each on its own random schedule drawn up front from the
run's seed (`schedule`, a pure function, so a seed replays the same plan), and `Nemeses`,
which strikes them against a running cluster and records what it did.

A fault that lasts (a process down, Redis read-only, a slow or black-holed link) is undone
after its drawn duration; one that cannot strike at its time (no serve copy alive yet) is
tried again shortly, so every planned fault happens."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from chaos.cluster import Cluster
from chaos.processes import Child, children_of
from chaos.profiles import (
    FAULT_SECONDS_MAX,
    FAULT_SECONDS_MIN,
    PROXY_LATENCY_SECONDS_MAX,
    Profile,
)

_RETRY_STRIKE_SECONDS = 0.5
# Longer than a serve copy can stay down: the supervisor's restart backoff grows to 30 s
# (WORKER_RESTART_BACKOFF_SECONDS_MAX) for a copy that keeps dying young, then it starts.
_STRIKE_WAIT_SECONDS_MAX = 90.0


class Kind(StrEnum):
    KILL_SERVE_COPY = "kill_serve_copy"
    KILL_SUPERVISOR = "kill_supervisor"
    KILL_WORKER = "kill_worker"
    POSTGRES_CRASH = "postgres_crash"
    SANDBOX_KILL = "sandbox_kill"
    REDIS_READ_ONLY = "redis_read_only"
    REDIS_FLUSH = "redis_flush"
    REDIS_KILL = "redis_kill"
    PROXY_LATENCY = "proxy_latency"
    PROXY_DROP = "proxy_drop"
    PROXY_BLACKHOLE = "proxy_blackhole"


# What a fault needs to own its server: with servers given from outside, these are skipped.
NEEDS_OWN_POSTGRES = frozenset({Kind.POSTGRES_CRASH})
NEEDS_OWN_REDIS = frozenset({Kind.REDIS_READ_ONLY, Kind.REDIS_FLUSH, Kind.REDIS_KILL})
PROXY_TARGETS = ("database", "processor")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: Kind
    at_seconds: float  # after the load starts
    duration_seconds: float
    target: str = ""  # a proxy's name, a worker's index
    latency_seconds: float = 0.0
    pick: int = 0  # which of several live candidates (serve copies) to strike


def schedule(
    seed: int, profile: Profile, kinds: list[Kind], workers: int
) -> dict[Kind, list[Fault]]:
    """Each kind's faults, in time order: `faults_per_kind` of them at uniformly random
    times over the fault window, all drawn from `seed`."""
    rng = random.Random(seed)
    plan: dict[Kind, list[Fault]] = {}
    for kind in kinds:
        faults = []
        for _ in range(profile.faults_per_kind):
            target = ""
            if kind.value.startswith("proxy_"):
                target = rng.choice(PROXY_TARGETS)
            elif kind is Kind.KILL_WORKER:
                target = str(rng.randrange(workers))
            faults.append(
                Fault(
                    kind=kind,
                    at_seconds=round(rng.uniform(0, profile.faults_seconds), 3),
                    duration_seconds=round(rng.uniform(FAULT_SECONDS_MIN, FAULT_SECONDS_MAX), 3),
                    target=target,
                    latency_seconds=round(rng.uniform(0.01, PROXY_LATENCY_SECONDS_MAX), 3),
                    pick=rng.randrange(1_000_000),
                )
            )
        plan[kind] = sorted(faults, key=lambda fault: fault.at_seconds)
    return plan


@dataclass
class Struck:
    fault: Fault
    started_seconds: float
    ended_seconds: float
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.fault),
            "started": self.started_seconds,
            "ended": self.ended_seconds,
            "error": self.error,
        }


@dataclass
class Nemeses:
    cluster: Cluster
    plan: dict[Kind, list[Fault]]
    struck: list[Struck] = field(default_factory=list)
    _origin: float = 0.0

    async def run(self) -> None:
        """Strike every planned fault; returns when all are done (or on cancellation)."""
        self._origin = time.monotonic()
        await asyncio.gather(*(self._run_kind(faults) for faults in self.plan.values()))

    async def _run_kind(self, faults: list[Fault]) -> None:
        for fault in faults:
            wait = self._origin + fault.at_seconds - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._strike_until_done(fault)

    async def _strike_until_done(self, fault: Fault) -> None:
        started = time.monotonic() - self._origin
        error: str | None = "never struck"
        give_up = time.monotonic() + _STRIKE_WAIT_SECONDS_MAX
        while time.monotonic() < give_up:
            try:
                if await self._strike(fault):
                    error = None
                    break
            except Exception as exc:  # e.g. flushing a Redis that is read-only right now
                error = f"{type(exc).__name__}: {exc}"  # kept only if it never strikes
            await asyncio.sleep(_RETRY_STRIKE_SECONDS)
        ended = time.monotonic() - self._origin
        self.struck.append(Struck(fault, round(started, 3), round(ended, 3), error))

    async def _strike(self, fault: Fault) -> bool:
        """One fault, start to end; False when there was nothing to strike yet."""
        strike = _STRIKES[fault.kind]
        return await strike(self.cluster, fault)


async def _down_for(
    fault: Fault, stop: Callable[[], Awaitable[None]], start: Callable[[], Awaitable[None]]
) -> bool:
    await stop()
    await asyncio.sleep(fault.duration_seconds)
    await start()
    return True


async def _kill_serve_copy(cluster: Cluster, fault: Fault) -> bool:
    assert cluster.serve is not None
    supervisor = cluster.serve.pid
    copies = children_of(supervisor) if supervisor is not None and cluster.serve.running() else []
    if not copies:
        return False
    os.kill(copies[fault.pick % len(copies)], signal.SIGKILL)
    return True


async def _held_down(fault: Fault, child: Child) -> bool:
    """SIGKILL `child` and keep it down for the fault's duration; the cluster's keeper
    starts it again."""
    child.wanted = False
    try:
        await child.kill()
        await asyncio.sleep(fault.duration_seconds)
    finally:
        child.wanted = True
    return True


async def _kill_supervisor(cluster: Cluster, fault: Fault) -> bool:
    assert cluster.serve is not None
    return await _held_down(fault, cluster.serve)


async def _kill_worker(cluster: Cluster, fault: Fault) -> bool:
    return await _held_down(fault, cluster.workers[int(fault.target)])


async def _postgres_crash(cluster: Cluster, fault: Fault) -> bool:
    postgres = cluster.postgres
    assert postgres is not None
    return await _down_for(fault, postgres.crash, postgres.start)


async def _sandbox_kill(cluster: Cluster, fault: Fault) -> bool:
    assert cluster.sandbox is not None
    return await _held_down(fault, cluster.sandbox)


async def _redis_read_only(cluster: Cluster, fault: Fault) -> bool:
    redis = cluster.redis
    assert redis is not None
    if not redis.child.running():
        return False
    return await _down_for(fault, redis.make_read_only, redis.make_writable)


async def _redis_flush(cluster: Cluster, fault: Fault) -> bool:
    assert cluster.redis is not None
    if not cluster.redis.child.running():
        return False
    await cluster.redis.flush()
    return True


async def _redis_kill(cluster: Cluster, fault: Fault) -> bool:
    redis = cluster.redis
    assert redis is not None
    return await _down_for(fault, redis.child.kill, redis.start)


async def _proxy_latency(cluster: Cluster, fault: Fault) -> bool:
    proxy = cluster.proxies[fault.target]
    proxy.latency(fault.latency_seconds)
    await asyncio.sleep(fault.duration_seconds)
    proxy.latency(0.0)
    return True


async def _proxy_drop(cluster: Cluster, fault: Fault) -> bool:
    cluster.proxies[fault.target].drop()
    return True


async def _proxy_blackhole(cluster: Cluster, fault: Fault) -> bool:
    proxy = cluster.proxies[fault.target]
    proxy.blackhole()
    await asyncio.sleep(fault.duration_seconds)
    proxy.flow()
    return True


_STRIKES: dict[Kind, Callable[[Cluster, Fault], Awaitable[bool]]] = {
    Kind.KILL_SERVE_COPY: _kill_serve_copy,
    Kind.KILL_SUPERVISOR: _kill_supervisor,
    Kind.KILL_WORKER: _kill_worker,
    Kind.POSTGRES_CRASH: _postgres_crash,
    Kind.SANDBOX_KILL: _sandbox_kill,
    Kind.REDIS_READ_ONLY: _redis_read_only,
    Kind.REDIS_FLUSH: _redis_flush,
    Kind.REDIS_KILL: _redis_kill,
    Kind.PROXY_LATENCY: _proxy_latency,
    Kind.PROXY_DROP: _proxy_drop,
    Kind.PROXY_BLACKHOLE: _proxy_blackhole,
}
