"""`chainserve serve` as a real process: starts, says which model it uses, serves, stops."""

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from chainserve.api.observability.log_redaction import RedactStreamTokens
from chainserve.api.serve import log_config
from tests.support.process import ROOT, ServerProcess


def test_serve_command_runs_the_app_factory_on_the_offline_model(tmp_path: Path) -> None:
    # tmp_path as cwd: no .env there, whatever the developer's checkout holds.
    with ServerProcess(tmp_path) as server:
        assert server.health["model"] == {
            "provider": "offline",
            "name": "chainserve-offline",
            "choices": ["chainserve-offline"],
        }
        with httpx.stream("GET", f"{server.url}/chains/explain/stream", params={"topic": "x"}) as r:
            body = r.read().decode()
        assert "event: end" in body
        status = server.stop()
    # Uvicorn shuts down gracefully, then re-raises the signal so the exit status shows it.
    assert status in (0, -signal.SIGTERM), server.output
    assert "Application shutdown complete" in server.output
    assert "model chainserve-offline (offline)" in server.output
    assert "set OPENAI_API_KEY or OPENAI_BASE_URL" in server.output


def test_help_lists_the_serve_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chainserve", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    for flag in ("--host", "--port", "--reload", "--workers"):
        assert flag in result.stdout


def test_the_access_log_never_shows_a_stream_token() -> None:
    config = log_config("info")
    assert "redact_tokens" in config["handlers"]["access"]["filters"]
    assert (
        config["filters"]["redact_tokens"]["()"]
        == "chainserve.api.observability.log_redaction.RedactStreamTokens"
    )
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/chains/chat/stream?message=hi&token=abc.def-_x&x=1", "1.1", 200),
        None,
    )
    assert RedactStreamTokens().filter(record)
    line = record.getMessage()
    assert "abc.def" not in line
    assert "message=hi&token=[redacted]&x=1" in line
