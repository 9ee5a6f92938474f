"""Starting, watching and stopping the benchmark's server processes.

Every server runs in its own process so its CPU time and memory can be read from the OS (psutil)
without counting the load generator. Children get a clean environment (no proxies, no LangSmith
tracing: every byte stays on 127.0.0.1) and, on Linux, die with the benchmark if it is killed.
"""

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import psutil

HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1

_PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def free_port() -> int:
    """A port that was free a moment ago (the servers bind it right after)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A minimal environment: no proxy settings, no tracing keys, so traffic stays on 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if k in _PASS_THROUGH}
    env.update(
        {
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def _load_prctl() -> Callable[..., int] | None:
    """Looked up once in the parent: a forked child must not load libraries before exec."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return cast(Callable[..., int], ctypes.CDLL(None, use_errno=True).prctl)
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the benchmark process goes away."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Service:
    """A running server process and what the benchmark reads from it."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path

    def __post_init__(self) -> None:
        self.proc = psutil.Process(self.popen.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its children (running and reaped)."""
        total = 0.0
        for index, proc in enumerate(self._tree()):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
                if index == 0:
                    total += times.children_user + times.children_system
        return total

    def rss(self) -> int:
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def launch(
    name: str,
    argv: Sequence[str],
    port: int,
    env: Mapping[str, str],
    cwd: Path,
    log_dir: Path,
) -> Service:
    log_path = log_dir / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    return Service(name, port, popen, log_path)


async def wait_listening(service: Service, time_limit: float) -> None:
    """Until the port accepts connections (uvicorn binds after app start-up), or raise."""
    deadline = time.monotonic() + time_limit
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited during start-up:\n{service.log_tail()}")
        try:
            _, writer = await asyncio.open_connection(HOST, service.port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise RuntimeError(
        f"{service.name} not listening after {time_limit:.0f} s:\n{service.log_tail()}"
    )


def stop(service: Service, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: only this process, by its own handle."""
    if not service.alive():
        return
    service.popen.terminate()
    try:
        service.popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        service.popen.kill()
        service.popen.wait(timeout=grace)


class Sampler:
    """Samples a service's RSS every `interval` seconds while the load runs; keeps the peak."""

    def __init__(self, service: Service, interval: float = 0.05) -> None:
        self.service = service
        self.interval = interval
        self.peak = service.rss()
        self._task: asyncio.Task[None] | None = None

    async def _run(self, max_seconds: float) -> None:
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            self.peak = max(self.peak, self.service.rss())
            await asyncio.sleep(self.interval)

    def start(self, max_seconds: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(max_seconds))

    async def stop(self) -> int:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.peak = max(self.peak, self.service.rss())
        return self.peak
