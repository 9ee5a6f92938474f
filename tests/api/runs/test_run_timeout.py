"""A run is stopped at `CHAINSERVE_RUN_TIMEOUT_SECONDS` with a typed `run_timeout` error,
whether its client waits for it or it runs on after a hang-up."""

import asyncio

import httpx
import pytest

from tests.api.streaming import chat_input, read_then_hang_up, stream
from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script

pytestmark = pytest.mark.asyncio

TOKENS = [f" w{i}" for i in range(1000)]


async def test_a_run_past_its_deadline_ends_with_a_run_timeout_error_event(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, run_timeout_seconds=1.0))
    upstream.enqueue(Script(chunks=TOKENS, delay=0.05))
    result = await stream(server.url, "chat", chat_input())
    assert result.events[-1].event == "error"
    error = result.events[-1].json()
    assert error["code"] == "run_timeout"
    assert error["retryable"] is False
    assert result.of("data")  # what came before the deadline was streamed and is kept
    await upstream.wait_for_disconnect_async(timeout=10)
    assert not upstream.last_request.completed


async def test_a_run_that_times_out_before_its_first_token_is_a_504(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, run_timeout_seconds=0.5))
    upstream.enqueue(Script(chunks=TOKENS, first_delay=3.0))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{server.url}/chains/chat/stream", json=chat_input())
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "run_timeout"


async def test_a_run_left_running_after_a_hang_up_is_bounded_by_the_deadline_too(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, run_timeout_seconds=1.0))
    upstream.enqueue(Script(chunks=TOKENS, delay=0.05))
    first = await read_then_hang_up(
        server.url, {**chat_input(), "on_disconnect": "continue"}, keep=3
    )
    run_id = first[0].json()["run_id"]
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(200):  # up to 20 s; the deadline is 1 s
            run = (await client.get(f"{server.url}/runs/{run_id}")).json()
            if run["status"] != "running":
                break
            await asyncio.sleep(0.1)
    assert run["status"] == "error"
    assert run["error"]["code"] == "run_timeout"


async def test_the_output_cap_is_asked_of_the_upstream_on_every_call(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, max_output_tokens=123))
    upstream.enqueue(Script(chunks=["Hi"]))
    result = await stream(server.url, "chat", chat_input())
    assert result.events[-1].event == "end"
    sent = upstream.last_request.json
    assert sent is not None
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 123
