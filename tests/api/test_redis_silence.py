"""With the Redis run log, a model that is silent for longer than Redis' socket timeout (5 s)
streams exactly as in memory: keepalives while it thinks, the whole answer, a terminal event."""

import asyncio
from typing import Any

import httpx
import pytest

from tests.api.streaming import StreamResult, chat_input, collect
from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.sse import SSEParser

pytestmark = pytest.mark.asyncio

# The defaults under test: a 10 s header hold and 15 s keepalives, both longer than the 5 s
# socket timeout; the client waits longer than either.
CLIENT_TIMEOUT = httpx.Timeout(60, connect=5)


async def _stream(url: str, body: dict[str, Any]) -> StreamResult:
    async with (
        httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as client,
        client.stream("POST", "/chains/chat/stream", json=body) as response,
    ):
        return await collect(response)


async def test_a_model_thinking_8s_before_its_first_token_streams_through_redis(
    start_server: ServerFactory, upstream: MockUpstream, redis_url: str
) -> None:
    server = start_server(upstream_settings(upstream, redis_url=redis_url, upstream_timeout=60))
    upstream.enqueue(Script(chunks=["Thought", " long"], first_delay=8))
    result = await _stream(server.url, chat_input())
    assert result.status == 200, result.body
    assert result.text == "Thought long"
    assert [e.event for e in result.events][-1] == "end"


async def test_20s_of_silence_mid_stream_keeps_the_stream_and_a_join_alive_through_redis(
    start_server: ServerFactory, upstream: MockUpstream, redis_url: str
) -> None:
    server = start_server(upstream_settings(upstream, redis_url=redis_url, upstream_timeout=60))
    upstream.enqueue(Script(chunks=["before", " after"], delay=20))
    async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT) as client:
        async with client.stream("POST", "/chains/chat/stream", json=chat_input()) as response:
            assert response.status_code == 200
            run_id = response.headers["x-run-id"]
            parser = SSEParser()
            events = []
            joined = asyncio.create_task(_join(client, run_id))
            async for chunk in response.aiter_raw():
                events.extend(parser.feed(chunk))
        joiner = await joined
    texts = "".join(e.json() for e in events if e.event == "data")
    assert texts == "before after"
    assert events[-1].event == "end"
    assert parser.comments, "no keepalive was sent during the silence"
    assert joiner.text == "before after"
    assert joiner.events[-1].event == "end"
    assert joiner.comments, "the join got no keepalive during the silence"


async def _join(client: httpx.AsyncClient, run_id: str) -> StreamResult:
    await asyncio.sleep(1)  # join while the model is silent
    async with client.stream("GET", f"/runs/{run_id}/stream") as response:
        return await collect(response)
