"""A Redis outage is a fast, retryable 503 `store_unavailable`, `/health` says degraded, and
a run already streaming from its worker's memory finishes."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.api.streaming import chat_input, stream
from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.raw_server import raw_server
from tests.support.redis_server import RedisServer
from tests.support.server import LiveServer
from tests.support.sse import Event, SSEParser

pytestmark = pytest.mark.asyncio

THREAD = "0" * 32


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop."""
    with RedisServer(tmp_path) as server:
        yield server


@pytest_asyncio.fixture
async def silent_redis_url() -> AsyncIterator[str]:
    """A TCP listener that accepts connections and never answers: a hung Redis."""

    async def never_answer(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass

    async with raw_server(never_answer) as url:
        yield url.replace("http://", "redis://").removesuffix("/v1") + "/0"


def _server(start: ServerFactory, upstream: MockUpstream, url: str) -> LiveServer:
    settings = upstream_settings(upstream, redis_url=url, store_timeout_seconds=0.5)
    return start(settings)


async def _assert_outage_answers(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for method, path, body in [
            ("POST", "/threads", {}),
            ("GET", "/threads", None),
            ("GET", "/runs/no-such-run", None),
            ("POST", "/chains/chat/invoke", {**chat_input(), "thread_id": THREAD}),
        ]:
            response = await client.request(method, path, json=body)
            assert response.status_code == 503, (path, response.text)
            error = response.json()["error"]
            assert error["code"] == "store_unavailable", path
            assert error["retryable"] is True
            assert response.headers["retry-after"]
        health = await client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["stores"] == {"redis": "unavailable"}
    result = await stream(server.url, "chat", chat_input())
    assert result.status == 503, result.body
    assert result.json()["error"]["code"] == "store_unavailable"


async def test_a_stopped_redis_is_a_retryable_503_and_a_degraded_health(
    start_server: ServerFactory, upstream: MockUpstream, own_redis: RedisServer
) -> None:
    server = _server(start_server, upstream, own_redis.url)
    async with httpx.AsyncClient(base_url=server.url) as client:
        health = (await client.get("/health")).json()
    assert (health["status"], health["stores"]) == ("ok", {"redis": "ok"})
    own_redis.__exit__(None, None, None)  # stopped while the server runs
    await _assert_outage_answers(server)


async def test_a_redis_that_never_answers_fails_fast_as_a_retryable_503(
    start_server: ServerFactory, upstream: MockUpstream, silent_redis_url: str
) -> None:
    await _assert_outage_answers(_server(start_server, upstream, silent_redis_url))


async def test_a_redis_outage_mid_stream_leaves_the_runs_own_stream_whole(
    start_server: ServerFactory,
    upstream: MockUpstream,
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The run's worker streams from its memory: Redis stopping mid-stream costs the other
    workers their view of the run (logged), not this client its answer."""
    words = [f" w{i}" for i in range(40)]
    upstream.enqueue(Script(chunks=words, delay=0.05))
    server = _server(start_server, upstream, own_redis.url)
    events: list[Event] = []
    parser = SSEParser()
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        client.stream("POST", "/chains/chat/stream", json=chat_input()) as response,
    ):
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            events.extend(parser.feed(chunk))
            if len([e for e in events if e.event == "data"]) == 3 and own_redis._process:
                own_redis.__exit__(None, None, None)  # stopped mid-stream
        run_id = response.headers["x-run-id"]
        record = (await client.get(f"/runs/{run_id}")).json()
    assert events[-1].event == "end", [e.event for e in events]
    assert "".join(e.json() for e in events if e.event == "data") == "".join(words)
    assert (record["status"], record["output"]) == ("done", "".join(words))
    assert "not sent to Redis" in caplog.text or "not recorded in Redis" in caplog.text
