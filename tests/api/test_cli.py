"""`chainserve serve` as a real process: starts, says which model it uses, serves, stops."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_health(url: str, process: subprocess.Popen[str]) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "server exited early"
        try:
            return dict(httpx.get(f"{url}/health", timeout=1).json())
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server never answered /health")


def test_serve_command_runs_the_app_factory_on_the_offline_model(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHAINSERVE_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "api", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,  # no .env here, whatever the developer's checkout holds
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = _wait_for_health(f"http://127.0.0.1:{port}", process)
        assert health["model"] == {
            "provider": "offline",
            "name": "chainserve-offline",
            "choices": ["chainserve-offline"],
        }
        with httpx.stream(
            "GET", f"http://127.0.0.1:{port}/chains/explain/stream", params={"topic": "x"}
        ) as response:
            body = response.read().decode()
        assert "event: end" in body
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    # Uvicorn shuts down gracefully, then re-raises the signal so the exit status shows it.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "model chainserve-offline (offline)" in output
    assert "set OPENAI_API_KEY or OPENAI_BASE_URL" in output


def test_help_lists_the_serve_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    for flag in ("--host", "--port", "--reload", "--workers"):
        assert flag in result.stdout
