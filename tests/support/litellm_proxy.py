"""LiteLLM's proxy as a child process: a real third-party OpenAI-compatible server, with the
error bodies, statuses and stream framing it really sends, in front of chainserve.

Its models answer with LiteLLM's own `mock_response` (no provider is called): text streamed
in LiteLLM's chunks, or the exception LiteLLM raises for a rate limit or a context window
exceeded, mapped to HTTP by LiteLLM itself.
"""

import os
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.process import ROOT, free_port
from tests.support.unavailable import unavailable

LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
MASTER_KEY = "sk-litellm-master-7c1e4a90d2b35f68"
ANSWER = "Hello from LiteLLM"

_MODELS = {
    "answers": ANSWER,
    "rate-limited": "litellm.RateLimitError",
    "context-too-long": "litellm.ContextWindowExceededError",
}
"""Proxy model name → its `mock_response`."""


def _config() -> str:
    lines = ["model_list:"]
    for name, response in _MODELS.items():
        lines += [
            f"  - model_name: {name}",
            "    litellm_params:",
            "      model: openai/gpt-4o-mini",
            "      api_key: sk-unused-by-a-mock",
            f'      mock_response: "{response}"',
        ]
    return "\n".join(lines) + "\n"


class LiteLLMProxy:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._workdir = workdir
        self._process: subprocess.Popen[str] | None = None
        self._log = workdir / "litellm.log"

    def __enter__(self) -> "LiteLLMProxy":
        if not LITELLM.exists():
            unavailable("LiteLLM's proxy is not installed (`make litellm-deps` installs it)")
        config = self._workdir / "config.yaml"
        config.write_text(_config())
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self._workdir),
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the price list
        }
        command = [str(LITELLM), "--config", str(config), "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--num_workers", "1"]
        with self._log.open("w") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
                cwd=self._workdir,
            )  # fmt: skip
        self._wait()
        return self

    def _wait(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + 90  # it imports a great deal before it listens
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                unavailable(f"LiteLLM's proxy exited at start-up:\n{self._log.read_text()[-3000:]}")
            try:
                url = f"http://127.0.0.1:{self.port}/health/liveliness"
                httpx.get(url, timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        unavailable("LiteLLM's proxy did not answer within 90 s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
