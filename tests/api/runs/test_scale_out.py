"""Two chainserve processes on one Redis behave as one service: runs and threads are shared."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.streaming import StreamResult, chat_input, collect, read_then_hang_up
from tests.conftest import FAILED
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.process import ServerProcess
from tests.support.redis_workers import redis_workers
from tests.support.sse import Event, SSEParser

pytestmark = pytest.mark.asyncio

TOKENS = [f" w{i}" for i in range(30)]


@pytest.fixture
def workers(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, upstream: MockUpstream
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Worker A and worker B: separate processes sharing one Redis database and upstream;
    a failed test shows what both logged."""
    yield from redis_workers(request, FAILED, tmp_path, redis_url, upstream)


async def _join(url: str, run_id: str, last: str | None, keep: int | None = None) -> list[Event]:
    headers = {"Last-Event-ID": last} if last is not None else {}
    events: list[Event] = []
    parser = SSEParser()
    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream("GET", f"/runs/{run_id}/stream", headers=headers) as response,
    ):
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            events.extend(parser.feed(chunk))
            if keep is not None and len(events) >= keep:
                return events[:keep]
    return events


async def test_a_run_started_on_one_worker_is_joined_and_resumed_through_the_other(
    workers: tuple[ServerProcess, ServerProcess], upstream: MockUpstream
) -> None:
    a, b = workers
    upstream.enqueue(Script(chunks=TOKENS, delay=0.02))
    body = {**chat_input(), "on_disconnect": "continue"}
    first = await read_then_hang_up(a.url, body, keep=5)
    run_id = first[0].json()["run_id"]

    second = await _join(b.url, run_id, first[-1].id, keep=8)  # dropped again, on B
    rest = await _join(a.url, run_id, second[-1].id)  # and finished back on A

    events = first + second + rest
    assert [int(e.id or -1) for e in events] == list(range(len(events)))
    assert "".join(e.json() for e in events if e.event == "data") == "".join(TOKENS)
    assert events[-1].event == "end"
    async with httpx.AsyncClient() as client:
        run = (await client.get(f"{b.url}/runs/{run_id}")).json()
    assert run["status"] == "done"
    assert run["output"] == "".join(TOKENS)


async def test_a_join_from_the_other_worker_during_a_fast_stream_gets_every_event_once(
    workers: tuple[ServerProcess, ServerProcess], upstream: MockUpstream
) -> None:
    """Worker A streams a long answer as fast as the provider sends it while worker B joins
    from the start: B's events, read from Redis in batches, are A's, each exactly once."""
    a, b = workers
    tokens = [f" {i % 10}" for i in range(2000)]  # a token each, within the output cap
    upstream.enqueue(Script(chunks=tokens))
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as client,
        client.stream("POST", "/chains/chat/stream", json=chat_input()) as response,
    ):
        run_id = response.headers["x-run-id"]
        joined = asyncio.create_task(_join(b.url, run_id, None))
        own = await collect(response)
    from_b = await joined
    for events in (own.events, from_b):
        assert [int(e.id or -1) for e in events] == list(range(len(events)))
        assert "".join(e.json() for e in events if e.event == "data") == "".join(tokens)
        assert events[-1].event == "end"
    assert [(e.event, e.data) for e in from_b] == [(e.event, e.data) for e in own.events]


async def test_a_run_started_on_one_worker_is_cancelled_through_the_other(
    workers: tuple[ServerProcess, ServerProcess], upstream: MockUpstream
) -> None:
    a, b = workers
    upstream.enqueue(Script(chunks=TOKENS * 10, delay=0.05))
    first = await read_then_hang_up(a.url, {**chat_input(), "on_disconnect": "continue"}, keep=4)
    run_id = first[0].json()["run_id"]
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{b.url}/runs/{run_id}/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        await upstream.wait_for_disconnect_async(timeout=5)
        assert not upstream.last_request.completed
        run = (await client.get(f"{a.url}/runs/{run_id}")).json()
    assert run["status"] == "cancelled"
    assert run["output"].startswith("".join(TOKENS[:3]))
    tail = await _join(b.url, run_id, None)
    assert tail[-1].event == "error"
    assert tail[-1].json()["code"] == "cancelled"


async def test_thread_history_written_through_one_worker_is_read_through_the_other(
    workers: tuple[ServerProcess, ServerProcess], upstream: MockUpstream
) -> None:
    a, b = workers
    upstream.enqueue(Script(chunks=["Hi Ada"]), Script(chunks=["You are Ada"]))
    async with httpx.AsyncClient(timeout=10) as client:
        thread_id = (await client.post(f"{a.url}/threads")).json()["thread_id"]
        async with client.stream(
            "POST",
            f"{a.url}/chains/chat/stream",
            json={**chat_input("I am Ada"), "thread_id": thread_id},
        ) as response:
            first: StreamResult = await collect(response)
        assert first.events[-1].event == "end"
        thread = (await client.get(f"{b.url}/threads/{thread_id}")).json()
        assert [m["content"] for m in thread["messages"]] == ["I am Ada", "Hi Ada"]
        await client.post(
            f"{b.url}/chains/chat/invoke", json={**chat_input("Who am I?"), "thread_id": thread_id}
        )
    sent = upstream.last_request.json
    assert sent is not None
    assert [m["content"] for m in sent["messages"][1:]] == ["I am Ada", "Hi Ada", "Who am I?"]
