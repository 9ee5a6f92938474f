"""A third-party server run as a child process for the tests: started, awaited until its
health URL answers, stopped; and, when it cannot run here, a skip locally, a failure in CI."""

import subprocess
import time
from types import TracebackType
from typing import Self

import httpx

from tests.support.unavailable import unavailable


class ChildServer:
    name = "the server"
    start_seconds = 30.0

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None

    def output(self) -> str:
        """What it printed, for a failure's message."""
        return ""

    def wait_until_healthy(self, url: str) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                unavailable(f"{self.name} exited at start-up:\n{self.output()[-3000:]}")
            try:
                httpx.get(url, timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        unavailable(f"{self.name} did not answer {url} within {self.start_seconds:g} s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
        self.process = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
