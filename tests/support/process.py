"""`chainserve serve` as a real child process on a free loopback port."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """Runs the CLI with a clean environment (no OPENAI_*/CHAINSERVE_* leaking in) plus `env`."""

    def __init__(
        self, cwd: Path, env: dict[str, str] | None = None, args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHAINSERVE_"))}
        self._env = {**base, "PYTHONPATH": str(ROOT), **(env or {})}
        self._cwd = cwd
        self._args = list(args)
        self._process: subprocess.Popen[str] | None = None
        self.output = ""

    def __enter__(self) -> "ServerProcess":
        command = [
            sys.executable,
            "-m",
            "chainserve",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self._args,
        ]
        self._process = subprocess.Popen(
            command,
            cwd=self._cwd,
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.health = self._wait_for_health()
        return self

    def _wait_for_health(self) -> dict[str, object]:
        assert self._process is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output, _ = self._process.communicate()
                raise AssertionError(f"server exited early:\n{output}")
            try:
                return dict(httpx.get(f"{self.url}/health", timeout=1).json())
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("server never answered /health")

    def signal(self, signum: int) -> None:
        assert self._process is not None
        self._process.send_signal(signum)

    def stop(self) -> int:
        """SIGTERM, wait, and keep what it printed; returns the exit status."""
        assert self._process is not None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        output, _ = self._process.communicate(timeout=30)
        self.output += output or ""
        return self._process.returncode

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.returncode is None:
            self.stop()
