"""Failures before and after the first chunk, and client hang-ups, over real HTTP."""

import asyncio
import logging
import socket
import time

import httpx
import pytest

from chainserve.api.settings import Settings
from tests.api.streaming import chat_input, stream
from tests.conftest import ServerFactory
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer
from tests.support.sse import SSEParser

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize(
    ("upstream_status", "status", "code", "retryable"),
    [
        (401, 502, "upstream_auth", False),
        (400, 400, "upstream_bad_request", False),
        (500, 502, "upstream_error", True),
        (503, 503, "upstream_unavailable", True),
    ],
)
async def test_upstream_error_before_first_chunk_is_a_real_http_error(
    openai_server: LiveServer,
    upstream: MockUpstream,
    upstream_status: int,
    status: int,
    code: str,
    retryable: bool,
) -> None:
    upstream.enqueue(
        Script(status=upstream_status, error_message="Incorrect API key sk-test-secret-key")
    )
    result = await stream(openai_server.url, "chat", chat_input())
    assert result.status == status
    assert result.headers["content-type"] == "application/json"
    error = result.json()["error"]
    assert error["code"] == code
    assert error["retryable"] is retryable
    assert error["run_id"] == result.headers["x-run-id"]
    assert "sk-test" not in result.body.decode()
    assert "Traceback" not in result.body.decode()


async def test_upstream_rate_limit_passes_retry_after_on(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(status=429, headers={"retry-after": "7"}))
    result = await stream(openai_server.url, "chat", chat_input())
    assert result.status == 429
    assert result.headers["retry-after"] == "7"
    assert result.json()["error"]["code"] == "upstream_rate_limited"


async def test_upstream_timeout_before_first_chunk_is_504(
    start_server: ServerFactory, openai_settings: Settings, upstream: MockUpstream
) -> None:
    server = start_server(openai_settings.model_copy(update={"upstream_timeout": 0.3}))
    upstream.enqueue(Script(first_delay=3))
    result = await stream(server.url, "chat", chat_input())
    assert result.status == 504
    assert result.json()["error"]["code"] == "upstream_timeout"


async def test_unreachable_upstream_is_503(
    start_server: ServerFactory, openai_settings: Settings
) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_server(
        openai_settings.model_copy(update={"openai_base_url": f"http://127.0.0.1:{port}/v1"})
    )
    result = await stream(server.url, "chat", chat_input())
    assert result.status == 503
    assert result.json()["error"]["code"] == "upstream_unavailable"


async def test_upstream_drop_after_first_chunk_is_an_error_event_then_clean_close(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["one", " two", " three"], drop_after=2))
    result = await stream(openai_server.url, "chat", chat_input())
    assert result.status == 200
    assert [e.event for e in result.events] == ["metadata", "data", "data", "error"]
    error = result.events[-1].json()
    assert error["code"] == "upstream_error"
    assert error["retryable"] is True
    assert error["run_id"] == result.headers["x-run-id"]
    assert set(error) == {"code", "message", "retryable", "run_id"}


async def _read_first_token_then_hang_up(url: str) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        async with client.stream("POST", "/chains/chat/stream", json=chat_input()) as response:
            parser = SSEParser()
            async for chunk in response.aiter_raw():
                if any(e.event == "data" for e in parser.feed(chunk)):
                    break
        return time.monotonic()


async def test_client_hang_up_cancels_the_upstream_request_within_a_second(
    openai_server: LiveServer, upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chainserve")
    baseline = openai_server.task_names()
    upstream.enqueue(Script(chunks=["tok"] * 100, delay=0.2))
    hung_up_at = await _read_first_token_then_hang_up(openai_server.url)

    disconnected_at = await upstream.wait_for_disconnect_async(timeout=5)
    assert disconnected_at - hung_up_at < 1.0
    assert not upstream.last_request.completed
    await _wait_for(lambda: openai_server.task_names() == baseline)
    await _wait_for(lambda: any(" cancelled " in r.getMessage() for r in caplog.records))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_hang_up_while_headers_are_held_cancels_the_upstream(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(first_delay=10))
    async with httpx.AsyncClient(base_url=openai_server.url, timeout=0.5) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/chains/chat/stream", json=chat_input())
        hung_up_at = time.monotonic()
    disconnected_at = await upstream.wait_for_disconnect_async(timeout=5)
    assert disconnected_at - hung_up_at < 1.0


async def _wait_for(probe: object, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not probe():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_invoke_error_is_typed_with_retry_after(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(status=429, headers={"retry-after": "3"}))
    async with httpx.AsyncClient(base_url=openai_server.url, timeout=10) as client:
        response = await client.post("/chains/explain/invoke", json={"input": {"topic": "x"}})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "upstream_rate_limited"


async def test_hang_up_during_invoke_cancels_the_upstream(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["tok"] * 50, delay=0.2))
    async with httpx.AsyncClient(base_url=openai_server.url, timeout=0.5) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/chains/explain/invoke", json={"input": {"topic": "x"}})
        hung_up_at = time.monotonic()
    disconnected_at = await upstream.wait_for_disconnect_async(timeout=5)
    assert disconnected_at - hung_up_at < 1.0
