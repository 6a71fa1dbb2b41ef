"""Everything a run starts, as separate processes: PostgreSQL and Redis (the run's own, or
the servers named by GATEWAY_CHAOS_DATABASE_URL / GATEWAY_CHAOS_REDIS_URL), a standalone
sandbox processor, one `gateway serve` with GATEWAY_PROCESSES copies (so its supervisor
exists), `gateway worker`s, and fault proxies between the gateway and PostgreSQL and between
the gateway and the processor. `heal` undoes every fault; `stop` ends what it started."""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from chaos.postgres import OwnPostgres
from chaos.processes import GATEWAY, Child, free_port
from chaos.profiles import Profile
from chaos.proxy import ChaosProxy
from chaos.redis_server import OwnRedis
from providers.sandbox import signing

API_KEY = "sk_test_chaos_" + secrets.token_hex(12)
_KEEPER_POLL_SECONDS = 0.5
_DATABASE = "gateway_chaos"


@dataclass
class Cluster:
    profile: Profile
    run_dir: Path
    postgres: OwnPostgres | None = None
    redis: OwnRedis | None = None
    database_url: str = ""  # direct, for the harness's own reads
    redis_url: str = ""
    proxies: dict[str, ChaosProxy] = field(default_factory=dict)
    sandbox: Child | None = None
    serve: Child | None = None
    workers: list[Child] = field(default_factory=list)
    sandbox_port: int = 0
    serve_port: int = 0
    restarts: dict[str, int] = field(default_factory=dict)  # exits no nemesis caused

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    async def start(self) -> None:
        await self._start_database()
        await self._start_redis()
        await self._start_sandbox()
        db = urlsplit(self.database_url)
        self.proxies["database"] = ChaosProxy("database", (db.hostname or "", db.port or 5432))
        self.proxies["processor"] = ChaosProxy("processor", ("127.0.0.1", self.sandbox_port))
        for proxy in self.proxies.values():
            await proxy.start()
        migrate = Child(
            "migrate",
            [GATEWAY, "migrate"],
            self.environment(direct=True),
            self.run_dir / "migrate.log",
        )
        await migrate.start()
        if migrate.process is None or await migrate.process.wait() != 0:
            raise RuntimeError(f"migrations failed; see {migrate.log_path}")
        await self._start_gateway()

    async def _start_database(self) -> None:
        configured = os.environ.get("GATEWAY_CHAOS_DATABASE_URL")
        if configured:
            self.database_url = await _fresh_database(configured)
            return
        self.postgres = OwnPostgres(free_port())
        await self.postgres.start()
        self.database_url = self.postgres.url

    async def _start_redis(self) -> None:
        configured = os.environ.get("GATEWAY_CHAOS_REDIS_URL")
        if configured:
            self.redis_url = configured
            return
        self.redis = OwnRedis(self.run_dir)
        await self.redis.start()
        self.redis_url = self.redis.url

    async def _start_sandbox(self) -> None:
        self.sandbox_port, self.serve_port = free_port(), free_port()
        env = {
            "GATEWAY_DATA_DIR": str(self.run_dir / "sandbox-data"),
            "GATEWAY_SANDBOX_PORT": str(self.sandbox_port),
            "GATEWAY_SANDBOX_WEBHOOK_URL": f"{self.api_url}/webhooks/sandbox",
            "GATEWAY_SANDBOX_WEBHOOK_SECRET": _SECRET,
            "GATEWAY_LOG_FORMAT": "json",
        }
        self.sandbox = Child("sandbox", [GATEWAY, "sandbox"], env, self.run_dir / "sandbox.log")
        await self.sandbox.start()
        await self.sandbox.wait_ready(f"{self.sandbox_url}/_sandbox/health")

    def environment(self, *, direct: bool = False) -> dict[str, str]:
        db = self.database_url
        if not direct:
            parts = urlsplit(db)
            netloc = parts.netloc.rsplit("@", 1)
            host = f"127.0.0.1:{self.proxies['database'].port}"
            db = parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()
        sandbox = f"http://127.0.0.1:{self.proxies['processor'].port}" if not direct else ""
        return {
            "GATEWAY_DATABASE_URL": db,
            "GATEWAY_REDIS_URL": self.redis_url,
            "GATEWAY_SANDBOX_URL": sandbox or self.sandbox_url,
            "GATEWAY_SANDBOX_WEBHOOK_SECRET": _SECRET,
            "GATEWAY_API_KEYS": API_KEY,
            "GATEWAY_DATA_DIR": str(self.run_dir / "gateway-data"),
            "GATEWAY_PORT": str(self.serve_port),
            "GATEWAY_LOG_FORMAT": "json",
            # A caller whose request died with its process waits this long for the key's
            # lock to go stale; the completer picks up unfinished charges this soon.
            "GATEWAY_CHARGES_LOCK_TIMEOUT_SECONDS": "10",
            "GATEWAY_CHARGES_COMPLETE_AFTER_SECONDS": "5",
            "GATEWAY_RECONCILE_EVERY_MINUTES": "1",
        }

    async def _start_gateway(self) -> None:
        env = {**self.environment(), "GATEWAY_PROCESSES": str(self.profile.serve_processes)}
        self.serve = Child("serve", [GATEWAY, "serve"], env, self.run_dir / "serve.log")
        await self.serve.start()
        await self.serve.wait_ready(f"{self.api_url}/readyz")
        for index in range(self.profile.workers):
            port = free_port()
            worker_env = {**self.environment(), "GATEWAY_WORKER_PORT": str(port)}
            worker = Child(
                f"worker{index}",
                [GATEWAY, "worker"],
                worker_env,
                self.run_dir / f"worker{index}.log",
            )
            await worker.start()
            await worker.wait_ready(f"http://127.0.0.1:{port}/readyz")
            self.workers.append(worker)

    def _kept(self) -> list[Child]:
        return [c for c in (self.sandbox, self.serve, *self.workers) if c is not None]

    async def keep_running(self) -> None:
        """Until cancelled: start again every process that is wanted and has exited. A
        nemesis's kill is held down for its duration first; any other exit (serve refusing
        to start while PostgreSQL is down) is counted in `restarts`."""
        while True:
            for child in self._kept():
                if child.wanted and not child.running():
                    if child.process is not None and child.process.returncode != -9:
                        self.restarts[child.name] = self.restarts.get(child.name, 0) + 1
                    await child.start()
            await asyncio.sleep(_KEEPER_POLL_SECONDS)

    async def heal(self) -> None:
        """Undo every fault: traffic flows, every server and process runs again."""
        for proxy in self.proxies.values():
            proxy.heal()
        if self.postgres is not None and not await self.postgres.running():
            await self.postgres.start()
        if self.redis is not None:
            if not self.redis.child.running():
                await self.redis.start()
            await self.redis.make_writable()
        for child in self._kept():
            child.wanted = True
            if not child.running():
                await child.start()
        assert self.sandbox is not None
        assert self.serve is not None
        await self.sandbox.wait_ready(f"{self.sandbox_url}/_sandbox/health")
        await self.serve.wait_ready(f"{self.api_url}/readyz")

    async def stop(self) -> None:
        for child in (*self.workers, self.serve, self.sandbox):
            if child is not None:
                await child.stop()
        for proxy in self.proxies.values():
            await proxy.close()
        if self.redis is not None:
            await self.redis.child.stop()
        if self.postgres is not None:
            await self.postgres.stop()


_SECRET = signing.generate_secret()


async def _fresh_database(server_url: str) -> str:
    """A new, empty `gateway_chaos` database on a server the harness does not own."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {_DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {_DATABASE}")
    finally:
        await admin.close()
    return urlsplit(server_url)._replace(path=f"/{_DATABASE}").geturl()
