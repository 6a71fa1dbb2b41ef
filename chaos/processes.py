"""The harness's child processes: each one started in a session of its own, its output
appended to a log file in the run folder, killable by pid and restartable with the same
command. Teardown ends every process group this harness started, and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

GATEWAY = str(Path(sys.executable).with_name("gateway"))
READY_TIMEOUT_SECONDS = 60.0
_POLL_SECONDS = 0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environment(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any `GATEWAY_*` setting, plus `env`: a child is
    configured only by what the harness means to give it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return {**base, "PYTHONUNBUFFERED": "1", **env}


class Child:
    """One command the harness runs: `start` (again after a kill), `kill`, `stop`."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = clean_environment(env)
        self.log_path = log
        self.process: asyncio.subprocess.Process | None = None
        self.groups: set[int] = set()  # every session it ran in, for teardown
        # Whether it should be running: a nemesis holding it down clears this; the cluster's
        # keeper starts again whatever is wanted and has exited (as systemd would).
        self.wanted = True

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        self.groups.add(self.process.pid)

    async def kill(self) -> None:
        """SIGKILL the process itself (not its children: a serve supervisor's copies are
        left to notice on their own, as they would in production)."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        """Teardown: SIGTERM, a grace period, then SIGKILL every group it ever ran in."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 15.0)
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        if self.process is not None and self.process.returncode is None:
            await self.process.wait()

    async def wait_ready(self, url: str, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
        """Poll `url` until it answers 200; fail early if the process died."""
        async with httpx.AsyncClient(timeout=2.0) as http:
            for _ in range(int(timeout_seconds / _POLL_SECONDS)):
                if self.process is not None and self.process.returncode is not None:
                    raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(url)).status_code == 200:
                        return
                await asyncio.sleep(_POLL_SECONDS)
        raise TimeoutError(f"{self.name}: {url} never became ready; see {self.log_path}")


def children_of(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux: /proc), e.g. a serve supervisor's copies."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            found.extend(int(part) for part in text.split())
    return found
