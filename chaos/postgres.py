"""The run's own PostgreSQL: a fresh cluster from the binaries of the `pgserver` wheel (a
dependency of the project, so a fresh CI machine has them) in a temporary data directory, on
a free TCP port with trust authentication. Unlike the embedded server it can be stopped with
`pg_ctl stop -m immediate` (a crash: no checkpoint, no goodbye to clients) and started again
on the same data. Run as root, the server runs as the `pgserver` user, as pgserver does."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

_SYSTEM_USER = "pgserver"
_START_TIMEOUT_SECONDS = 60


def _bin_dir() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        from pgserver._commands import POSTGRES_BIN_PATH

    path: Path = POSTGRES_BIN_PATH
    return path


def _prepare_for_root(data_dir: Path) -> str | None:
    """Run as root, PostgreSQL refuses to start: give the data dir to an ordinary user."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver import utils

    utils.ensure_user_exists(_SYSTEM_USER)
    utils.ensure_prefix_permissions(data_dir)
    utils.ensure_prefix_permissions(_bin_dir())
    user = pwd.getpwnam(_SYSTEM_USER)
    os.chown(data_dir, user.pw_uid, user.pw_gid)
    return _SYSTEM_USER


class OwnPostgres:
    """A PostgreSQL cluster the harness owns: `start`, `crash`, `dump`, `remove`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._user: str | None = None
        self.bin = _bin_dir()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/gateway"

    def _run(self, *argv: str) -> str:
        result = subprocess.run(  # noqa: S603 - our own binaries, fixed arguments
            argv, check=True, capture_output=True, text=True, user=self._user
        )
        return result.stdout

    def _init(self) -> None:
        self.data_dir.mkdir(parents=True)
        os.chmod(self.root, 0o755)  # noqa: S103 - the server's user reads its log dir
        self._user = _prepare_for_root(self.root)
        if self._user is not None:
            shutil.chown(self.data_dir, self._user)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def _pg_ctl_start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.data_dir} -c max_connections=300 "
            "-c fsync=on -c synchronous_commit=on"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            str(_START_TIMEOUT_SECONDS),
            "-o",
            options,
            "-l",
            str(self.log_path),
        )

    async def start(self) -> None:
        """Create the cluster on first use, then start it (recovering after a crash)."""
        if not self.data_dir.exists():
            await asyncio.to_thread(self._init)
            await asyncio.to_thread(self._pg_ctl_start)
            await asyncio.to_thread(
                self._run,
                str(self.bin / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "gateway",
            )
            return
        await asyncio.to_thread(self._pg_ctl_start)

    async def crash(self) -> None:
        """`pg_ctl stop -m immediate`: every backend dies at once, recovery on next start."""
        await self._pg_ctl_stop("immediate")

    async def stop(self) -> None:
        if await self.running():
            await self._pg_ctl_stop("fast")

    async def _pg_ctl_stop(self, mode: str) -> None:
        await asyncio.to_thread(
            self._run, str(self.bin / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w"
        )

    async def running(self) -> bool:
        try:
            await asyncio.to_thread(
                self._run, str(self.bin / "pg_ctl"), "status", "-D", str(self.data_dir)
            )
        except subprocess.CalledProcessError:
            return False
        return True

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


async def dump(url: str, target: Path) -> None:
    """A plain-SQL dump of the database at `url`, for a failed run's folder."""
    with target.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            str(_bin_dir() / "pg_dump"),
            "--no-owner",
            url,
            stdout=out,
            stderr=asyncio.subprocess.PIPE,
        )
        _, error = await process.communicate()
    if process.returncode != 0:
        target.with_suffix(".error").write_bytes(error)
