"""With Redis as the run log, a model's long silence streams exactly as it does in memory."""

import asyncio
from typing import Any

import httpx
import pytest

from tests.api.streaming import StreamResult, chat_input, collect
from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer
from tests.support.sse import SSEParser

pytestmark = pytest.mark.asyncio


@pytest.fixture
def redis_server(start_server: ServerFactory, upstream: MockUpstream, redis_url: str) -> LiveServer:
    """Default keepalive (15 s) and header hold (10 s): both longer than redis-py's 5 s."""
    return start_server(upstream_settings(upstream, redis_url=redis_url, upstream_timeout=60.0))


async def _post(url: str, body: dict[str, Any]) -> StreamResult:
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as client,
        client.stream("POST", "/chains/chat/stream", json=body) as response,
    ):
        return await collect(response)


async def _join_after_first_token(url: str, run_id: asyncio.Future[str]) -> StreamResult:
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as client,
        client.stream("GET", f"/runs/{await run_id}/stream") as response,
    ):
        return await collect(response)


async def test_redis_run_waits_out_a_model_silent_before_its_first_token(
    redis_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Hel", "lo"], first_delay=8.0))
    result = await _post(redis_server.url, chat_input())
    assert result.status == 200, result.body
    assert result.text == "Hello"
    assert result.events[-1].event == "end"


async def test_redis_stream_and_join_keep_alive_through_mid_stream_silence(
    redis_server: LiveServer, upstream: MockUpstream
) -> None:
    """A 20 s gap after the first token: the stream and a join both get keepalives, the
    whole answer and a terminal event."""
    upstream.enqueue(Script(chunks=["Hel", "lo"], delay=20.0))
    run_id: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def post() -> StreamResult:
        result = StreamResult(0, httpx.Headers())
        parser = SSEParser()
        async with (
            httpx.AsyncClient(base_url=redis_server.url, timeout=60) as client,
            client.stream("POST", "/chains/chat/stream", json=chat_input()) as response,
        ):
            result.status = response.status_code
            async for chunk in response.aiter_raw():
                result.events.extend(parser.feed(chunk))
                if result.of("data") and not run_id.done():
                    run_id.set_result(result.events[0].json()["run_id"])
        result.comments = parser.comments
        return result

    streamed, joined = await asyncio.gather(
        post(), _join_after_first_token(redis_server.url, run_id)
    )
    for result in (streamed, joined):
        assert result.status == 200
        assert result.text == "Hello"
        assert result.comments, "no keepalive during the silence"
        assert result.events[-1].event == "end"
