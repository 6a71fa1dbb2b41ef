"""Run profiles: how long the load and the faults last, how many faults of each kind, how
many processes and callers. `short` is CI's (about three minutes, at least 20 faults of every
kind); `long` is on demand (1,000 faults or more)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    faults_seconds: float  # load and nemeses run this long
    faults_per_kind: int  # each nemesis kind strikes exactly this often, at random times
    serve_processes: int  # GATEWAY_PROCESSES of the one `gateway serve` (its supervisor + copies)
    workers: int  # `gateway worker` processes
    clients: int  # concurrent callers, one request of theirs in flight at a time
    accounts: int
    quiescence_seconds_max: float  # after the faults: to finish requests and settle everything


PROFILES: dict[str, Profile] = {
    "short": Profile(
        name="short",
        faults_seconds=130.0,
        faults_per_kind=20,
        serve_processes=2,
        workers=1,
        clients=6,
        accounts=6,
        quiescence_seconds_max=150.0,
    ),
    "long": Profile(
        name="long",
        faults_seconds=900.0,
        faults_per_kind=100,
        serve_processes=2,
        workers=2,
        clients=6,
        accounts=10,
        quiescence_seconds_max=300.0,
    ),
}

# How long a fault that lasts lasts (drawn uniformly between these, from the run's seed).
FAULT_SECONDS_MIN = 0.3
FAULT_SECONDS_MAX = 2.5
PROXY_LATENCY_SECONDS_MAX = 0.3  # added to every chunk, each way, while a latency fault lasts
