"""Run the real `gateway` command as a subprocess, for end-to-end tests that need a whole
process: start it, wait until it answers, stop it gracefully (SIGTERM) or kill it (SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

GATEWAY = Path(sys.executable).with_name("gateway")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceProcess:
    """One `gateway <command>` process with its own environment and log file."""

    def __init__(self, command: str, env: Mapping[str, str], log_path: Path) -> None:
        self.command = command
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        self.env.update(env)
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                str(GATEWAY), self.command, env=self.env, stdout=log, stderr=log
            )

    async def wait_ready(self, url: str, timeout_seconds: float = 30.0) -> None:
        """Poll `url` until it answers 200, failing early if the process died."""
        async with httpx.AsyncClient(timeout=1.0) as http:
            for _ in range(int(timeout_seconds * 10)):
                if self.process is not None and self.process.returncode is not None:
                    raise RuntimeError(f"{self.command} exited early:\n{self.log()}")
                try:
                    if (await http.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{url} never became ready:\n{self.log()}")

    async def stop(
        self, sig: signal.Signals = signal.SIGTERM, timeout_seconds: float = 15.0
    ) -> int:
        """Send `sig` and wait for the exit code."""
        if self.process is None:
            return 0
        if self.process.returncode is not None:
            return self.process.returncode
        self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), timeout_seconds)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]
