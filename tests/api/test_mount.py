"""`add_routes`: chainserve inside a user's FastAPI app, served by uvicorn, lifespans tied."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import openai

from tests.support.process import ROOT, free_port

HOST_APP = """
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from langchain_core.runnables import RunnableLambda

from chainserve import add_routes

logging.basicConfig(level=logging.INFO)  # the host's logging shows chainserve's lines too

@asynccontextmanager
async def lifespan(app):
    print("host: started", flush=True)
    yield
    print("host: stopped", flush=True)

app = FastAPI(lifespan=lifespan)

@app.get("/own")
def own():
    return {"host": True}

served = add_routes(app, {"shout": RunnableLambda(lambda v: v["text"].upper())}, path="/ai")
"""


def test_chainserve_mounted_in_a_host_app_serves_and_shares_its_lifespan(tmp_path: Path) -> None:
    (tmp_path / "host.py").write_text(textwrap.dedent(HOST_APP))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHAINSERVE_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "host:app", "--port", str(port)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"{url}/ai/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0]
                time.sleep(0.1)
        assert health.json()["chains"] == ["shout"]
        (listed,) = httpx.get(f"{url}/ai/chains").json()["chains"]
        assert listed["endpoints"] == {
            "stream": "/ai/chains/shout/stream",
            "invoke": "/ai/chains/shout/invoke",
            "langserve": "/ai/langserve/shout/",
        }
        assert httpx.get(f"{url}/own").json() == {"host": True}
        invoked = httpx.post(f"{url}/ai/chains/shout/invoke", json={"input": {"text": "hi"}})
        assert invoked.json()["output"] == "HI"
        with httpx.stream(
            "POST", f"{url}/ai/chains/shout/stream", json={"input": {"text": "sse"}}
        ) as response:
            body = response.read().decode()
        assert '"SSE"' in body
        assert "event: end" in body
        models = openai.OpenAI(base_url=f"{url}/ai/v1", api_key="unused").models.list()
        assert [m.id for m in models] == ["shout"]
        langserve = httpx.post(f"{url}/ai/langserve/shout/invoke", json={"input": {"text": "ls"}})
        assert langserve.json()["output"] == "LS"
        missing = httpx.get(f"{url}/ai/chains/nope/stream")
        assert missing.status_code in (404, 405)
        assert "error" in missing.json()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    # chainserve's start-up ran inside the host's, and its shutdown after the host's.
    assert "serving chains shout" in output, output
    lines = output.splitlines()
    started = next(i for i, line in enumerate(lines) if "serving chains shout" in line)
    assert started < lines.index("host: started")
    assert lines.index("host: stopped") < next(
        i for i, line in enumerate(lines) if "Application shutdown complete" in line
    )
