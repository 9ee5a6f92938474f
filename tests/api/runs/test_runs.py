"""Runs outlive their request: look them up, rejoin with Last-Event-ID, cancel them."""

import asyncio
import time
from typing import Any

import httpx
import pytest

from chainserve.api.settings import Settings
from tests.api.streaming import StreamResult, chat_input, collect, read_then_hang_up, stream
from tests.conftest import ServerFactory
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer
from tests.support.sse import SSEParser

pytestmark = pytest.mark.asyncio

TOKENS = [f" t{i}" for i in range(12)]


async def _join(url: str, run_id: str, **kwargs: Any) -> StreamResult:
    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream("GET", f"/runs/{run_id}/stream", **kwargs) as response,
    ):
        return await collect(response)


async def _run(url: str, run_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get(f"/runs/{run_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _until_ended(url: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (run := await _run(url, run_id))["status"] == "running":
        assert time.monotonic() < deadline, "run never ended"
        await asyncio.sleep(0.05)
    return run


async def test_finished_run_reports_status_output_and_usage(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Hello", " there"]))
    result = await stream(openai_server.url, "chat", chat_input())
    run = await _run(openai_server.url, result.headers["x-run-id"])
    assert run["status"] == "done"
    assert run["output"] == "Hello there"
    assert run["chain"] == "chat"
    assert run["usage"]["output_tokens"] == 2
    assert run["last_seq"] == int(result.events[-1].id or -1) == 3


async def test_continued_run_survives_a_hang_up_and_resumes_with_no_gap_or_duplicate(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=TOKENS, delay=0.03))
    body = {**chat_input(), "on_disconnect": "continue"}
    first = await read_then_hang_up(openai_server.url, body, keep=4)
    run_id = first[0].json()["run_id"]
    rest = await _join(openai_server.url, run_id, headers={"Last-Event-ID": first[-1].id or ""})

    ids = [int(e.id or -1) for e in first + rest.events]
    assert ids == list(range(len(ids)))
    text = "".join(e.json() for e in first + rest.events if e.event == "data")
    assert text == "".join(TOKENS)
    assert rest.events[-1].event == "end"
    assert upstream.last_request.completed
    assert upstream.last_request.disconnected_at is None


async def test_join_from_the_start_replays_everything_then_204_when_caught_up(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["a", "b"]))
    original = await stream(openai_server.url, "chat", chat_input())
    run_id = original.headers["x-run-id"]
    replay = await _join(openai_server.url, run_id)
    assert [(e.event, e.data, e.id) for e in replay.events] == [
        (e.event, e.data, e.id) for e in original.events
    ]
    caught_up = await _join(
        openai_server.url, run_id, params={"last_event_id": replay.events[-1].id}
    )
    assert caught_up.status == 204


async def test_a_second_client_follows_a_live_run(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["one", " two", " three"], hold_after=1))
    async with (
        httpx.AsyncClient(base_url=openai_server.url, timeout=10) as client,
        client.stream("POST", "/chains/chat/stream", json=chat_input()) as response,
    ):
        run_id = response.headers["x-run-id"]
        joiner = asyncio.create_task(_join(openai_server.url, run_id))
        await asyncio.sleep(0.2)
        upstream.release()
        original = await collect(response)
    joined = await joiner
    assert [e.data for e in joined.events] == [e.data for e in original.events]
    assert joined.events[-1].event == "end"


async def test_cancel_stops_the_upstream_and_keeps_partial_output(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=TOKENS * 10, delay=0.05))
    async with (
        httpx.AsyncClient(base_url=openai_server.url, timeout=10) as client,
        client.stream("POST", "/chains/chat/stream", json=chat_input()) as response,
    ):
        run_id = response.headers["x-run-id"]
        parser, events = SSEParser(), []
        cancel: asyncio.Task[httpx.Response] | None = None
        async for chunk in response.aiter_raw():
            events.extend(parser.feed(chunk))
            if cancel is None and sum(e.event == "data" for e in events) >= 3:
                cancel = asyncio.create_task(client.post(f"/runs/{run_id}/cancel"))
                cancelled_at = time.monotonic()
        assert cancel is not None
        cancelled = await cancel

    assert cancelled.status_code == 200
    run = cancelled.json()
    assert run["status"] == "cancelled"
    assert run["output"].startswith("".join(TOKENS[:3]))
    assert run["usage"]["approximate"] is True
    assert run["usage"]["output_tokens"] >= 3
    assert events[-1].event == "error"
    assert events[-1].json()["code"] == "cancelled"
    disconnected_at = await upstream.wait_for_disconnect_async(timeout=5)
    assert disconnected_at - cancelled_at < 1.0

    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        again = await client.post(f"/runs/{run_id}/cancel")
    assert again.status_code == 409


async def test_unknown_runs_and_bad_resume_points_are_clear_errors(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        assert (await client.get("/runs/nope")).status_code == 404
        assert (await client.get("/runs/nope/stream")).status_code == 404
        assert (await client.post("/runs/nope/cancel")).status_code == 404
    result = await stream(openai_server.url, "chat", chat_input())
    bad = await _join(openai_server.url, result.headers["x-run-id"], headers={"Last-Event-ID": "x"})
    assert bad.status == 400


async def test_resuming_before_the_kept_window_is_410(
    start_server: ServerFactory, openai_settings: Settings, upstream: MockUpstream
) -> None:
    server = start_server(openai_settings.model_copy(update={"run_max_events": 100}))
    upstream.enqueue(Script(chunks=TOKENS * 20))
    body = {**chat_input(), "on_disconnect": "continue"}
    run_id = (await read_then_hang_up(server.url, body, keep=1))[0].json()["run_id"]
    run = await _until_ended(server.url, run_id)
    assert run["status"] == "done"
    assert run["last_seq"] > 200
    gone = await _join(server.url, run_id)
    assert gone.status == 410
    recent = await _join(server.url, run_id, headers={"Last-Event-ID": str(run["last_seq"] - 2)})
    assert [e.event for e in recent.events] == ["data", "end"]


async def test_a_continued_run_still_extends_its_thread(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        thread_id = (await client.post("/threads")).json()["thread_id"]
    upstream.enqueue(Script(chunks=TOKENS, delay=0.03))
    body = {**chat_input("keep going"), "on_disconnect": "continue", "thread_id": thread_id}
    first = await read_then_hang_up(openai_server.url, body, keep=2)
    run = await _until_ended(openai_server.url, first[0].json()["run_id"])
    assert run["status"] == "done"
    assert run["thread_id"] == thread_id
    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        messages = (await client.get(f"/threads/{thread_id}")).json()["messages"]
    assert [m["content"] for m in messages] == ["keep going", "".join(TOKENS)]


async def test_event_source_reconnecting_to_a_get_stream_is_told_to_stop_not_rerun(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    """A reconnect would start the run again; 204 stops EventSource retrying."""
    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        response = await client.get(
            "/chains/chat/stream", params={"message": "hi"}, headers={"Last-Event-ID": "3"}
        )
    assert response.status_code == 204
    assert upstream.requests == []
