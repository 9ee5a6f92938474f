"""LiteLLM's proxy as a child process: a real third-party OpenAI-compatible server, with the
error bodies, statuses and stream framing it really sends, in front of chainserve.

Its models answer with LiteLLM's own `mock_response` (no provider is called): text streamed
in LiteLLM's chunks, or the exception LiteLLM raises for a rate limit or a context window
exceeded, mapped to HTTP by LiteLLM itself.
"""

import os
import subprocess
from pathlib import Path

from tests.support.child_server import ChildServer
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


class LiteLLMProxy(ChildServer):
    name = "LiteLLM's proxy"
    start_seconds = 90.0  # it imports a great deal before it listens

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._workdir = workdir
        self._log = workdir / "litellm.log"

    def output(self) -> str:
        return self._log.read_text() if self._log.exists() else ""

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
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
                cwd=self._workdir,
            )  # fmt: skip
        self.wait_until_healthy(f"http://127.0.0.1:{self.port}/health/liveliness")
        return self
