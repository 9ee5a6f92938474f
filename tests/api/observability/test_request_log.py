"""Every response carries a request id; in JSON log format every line is JSON and names it."""

import json
import logging
from pathlib import Path

import httpx
import pytest

from chainserve.api.observability.json_logs import JsonFormatter
from tests.api.streaming import chat_input
from tests.conftest import ServerFactory, offline_settings
from tests.support.process import ServerProcess
from tests.support.server import LiveServer


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-123.X:y_z", True), ("has space", False), ("x" * 200, False), ("", False)],
)
async def test_a_sane_request_id_is_echoed_and_any_other_is_replaced(
    offline_server: LiveServer, sent: str, kept: bool
) -> None:
    async with httpx.AsyncClient(base_url=offline_server.url, timeout=10) as client:
        response = await client.get("/health", headers={"X-Request-Id": sent})
    request_id = response.headers["x-request-id"]
    assert (request_id == sent) is kept
    if not kept:
        assert len(request_id) == 32
        assert all(c in "0123456789abcdef" for c in request_id)


@pytest.mark.asyncio
async def test_refusals_carry_a_request_id_too(start_server: ServerFactory) -> None:
    server = start_server(offline_settings(api_keys="sk-a"))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.get("/chains")
    assert response.status_code == 401
    assert response.headers["x-request-id"]


def test_json_lines_carry_extra_fields_and_exceptions() -> None:
    record = logging.LogRecord(
        "chainserve.runs", logging.INFO, __file__, 1, "run %s", ("r1",), None
    )
    record.run_id = "r1"
    record.request_id = "req-1"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "run r1"
    assert line["level"] == "info"
    assert line["run_id"] == "r1"
    assert line["request_id"] == "req-1"
    assert line["ts"].endswith("Z")


def test_json_logs_of_a_real_server_tie_the_request_line_and_the_run_line_together(
    tmp_path: Path,
) -> None:
    env = {"CHAINSERVE_LOG_FORMAT": "json", "CHAINSERVE_API_KEYS": "sk-json-log-key-000"}
    with ServerProcess(tmp_path, env) as server:
        response = httpx.post(
            f"{server.url}/chains/chat/invoke",
            json=chat_input("hi"),
            headers={"Authorization": "Bearer sk-json-log-key-000", "X-Request-Id": "trace-42"},
            timeout=10,
        )
        assert response.status_code == 200
        server.stop()
    lines = [json.loads(line) for line in server.output.splitlines() if line.startswith("{")]
    assert lines, server.output
    assert all(line.startswith("{") for line in server.output.splitlines() if line.strip())
    request = next(
        line
        for line in lines
        if line["logger"] == "chainserve.requests" and line["path"] == "/chains/chat/invoke"
    )
    assert request["request_id"] == "trace-42"
    assert request["status"] == 200
    assert request["key_id"].startswith("key-")
    run = next(line for line in lines if line.get("run_id"))
    assert run["request_id"] == "trace-42"
    assert run["chain"] == "chat"
    assert run["run_status"] == "done"
    assert "sk-json-log-key-000" not in server.output
