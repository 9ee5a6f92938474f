"""With Redis as the run log, a model's long silence streams exactly as it does in memory,
on the run's own worker and through another one."""

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


SILENCE = 6.0
"""Longer than the store timeout (1 s here) several times over, and than the keepalive."""


@pytest.fixture
def workers(
    start_server: ServerFactory, upstream: MockUpstream, redis_url: str
) -> tuple[LiveServer, LiveServer]:
    """Two apps on one Redis: the run's worker streams from memory, the other reads Redis,
    with blocking reads far shorter than the silence."""
    settings = upstream_settings(
        upstream,
        redis_url=redis_url,
        upstream_timeout=60.0,
        store_timeout_seconds=1.0,
        keepalive_seconds=2.0,
        first_chunk_hold_seconds=0.5,  # the run id reaches the client before the first token
    )
    return start_server(settings), start_server(settings)


async def _post(
    url: str, body: dict[str, Any], run_id: asyncio.Future[str], *, on_headers: bool = False
) -> StreamResult:
    """Stream a run; its id is told once the headers arrive (`on_headers`) or with the first
    token."""
    result = StreamResult(0, httpx.Headers())
    parser = SSEParser()
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as client,
        client.stream("POST", "/chains/chat/stream", json=body) as response,
    ):
        result.status = response.status_code
        if on_headers:
            run_id.set_result(response.headers["x-run-id"])
        async for chunk in response.aiter_raw():
            result.events.extend(parser.feed(chunk))
            if result.of("data") and not run_id.done():
                run_id.set_result(result.events[0].json()["run_id"])
    result.comments = parser.comments
    return result


async def _join(url: str, run_id: asyncio.Future[str]) -> StreamResult:
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as client,
        client.stream("GET", f"/runs/{await run_id}/stream") as response,
    ):
        return await collect(response)


async def test_redis_run_waits_out_a_model_silent_before_its_first_token(
    workers: tuple[LiveServer, LiveServer], upstream: MockUpstream
) -> None:
    running, other = workers
    upstream.enqueue(Script(chunks=["Hel", "lo"], first_delay=SILENCE))
    run_id: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    streamed, joined = await asyncio.gather(
        _post(running.url, chat_input(), run_id, on_headers=True), _join(other.url, run_id)
    )
    for result in (streamed, joined):
        assert result.status == 200, result.body
        assert result.text == "Hello"
        assert result.events[-1].event == "end"


async def test_redis_stream_and_join_keep_alive_through_mid_stream_silence(
    workers: tuple[LiveServer, LiveServer], upstream: MockUpstream
) -> None:
    """A long gap after the first token: the stream on the run's worker and a join on the
    other both get keepalives, the whole answer and a terminal event."""
    running, other = workers
    upstream.enqueue(Script(chunks=["Hel", "lo"], delay=SILENCE))
    run_id: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    streamed, joined = await asyncio.gather(
        _post(running.url, chat_input(), run_id), _join(other.url, run_id)
    )
    for result in (streamed, joined):
        assert result.status == 200
        assert result.text == "Hello"
        assert result.comments, "no keepalive during the silence"
        assert result.events[-1].event == "end"
