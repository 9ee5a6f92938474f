"""Shutdown never cuts a stream off mid-sentence: after the grace period, a retryable last event."""

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from chainserve.api.settings import Settings
from tests.api.streaming import chat_input, collect
from tests.conftest import ServerFactory, offline_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.process import ServerProcess
from tests.support.sse import SSEParser

pytestmark = pytest.mark.asyncio


def _slow_offline(**overrides: object) -> Settings:
    # The offline model waits this long between words: a reply takes several seconds.
    return offline_settings(offline_delay=0.3, shutdown_grace_seconds=0.5, **overrides)


async def test_a_stream_open_past_the_grace_period_ends_with_a_retryable_error(
    start_server: ServerFactory,
) -> None:
    server = start_server(_slow_offline())
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=20) as client,
        client.stream("POST", "/chains/chat/stream", json=chat_input("hi")) as response,
    ):
        assert response.status_code == 200
        server.app.state.runs.drain.begin()  # what SIGTERM does
        result = await collect(response)
    kinds = [e.event for e in result.events]
    assert kinds[0] == "metadata"
    assert "data" in kinds
    last = result.events[-1]
    assert last.event == "error"
    assert last.json()["code"] == "shutting_down"
    assert last.json()["retryable"] is True
    assert last.retry == 1000
    assert last.id == result.events[-2].id  # the last delivered id: a resume skips nothing


async def test_a_stream_that_finishes_within_the_grace_period_ends_normally(
    start_server: ServerFactory,
) -> None:
    server = start_server(offline_settings(offline_delay=0.0, shutdown_grace_seconds=5))
    server.app.state.runs.drain.begin()
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        response = await client.post("/chains/chat/stream", json=chat_input("hi"))
    assert response.status_code == 200
    assert "event: end" in response.text
    assert "shutting_down" not in response.text


async def test_a_stream_still_waiting_for_its_first_token_gets_a_503_with_retry_after(
    start_server: ServerFactory, openai_settings: Settings, upstream: MockUpstream
) -> None:
    server = start_server(openai_settings.model_copy(update={"shutdown_grace_seconds": 0.3}))
    upstream.enqueue(Script(chunks=["late"], first_delay=3))
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        pending = asyncio.create_task(client.post("/chains/chat/stream", json=chat_input("hi")))
        await upstream.wait_for_requests_async(1)
        server.app.state.runs.drain.begin()
        response = await pending
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "shutting_down"


async def _first_data_then_rest(url: str, ready: asyncio.Event, count: list[int]) -> list[str]:
    """Open a stream, report once its first token arrived, then read it to its end."""
    events: list[str] = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream("POST", "/chains/chat/stream", json=chat_input("hi")) as response,
    ):
        parser = SSEParser()
        async for chunk in response.aiter_raw():
            for event in parser.feed(chunk):
                events.append(event.event)
                if event.event == "data" and events.count("data") == 1:
                    count[0] += 1
                    if count[0] == 5:
                        ready.set()
                if event.event == "error":
                    assert event.json()["code"] == "shutting_down"
                    assert event.retry == 1000
    return events


async def test_sigterm_to_a_real_server_gives_every_open_stream_a_terminal_event(
    tmp_path: Path,
) -> None:
    env = {"CHAINSERVE_OFFLINE_DELAY": "0.3", "CHAINSERVE_SHUTDOWN_GRACE_SECONDS": "1"}
    with ServerProcess(tmp_path, env) as server:
        ready, count = asyncio.Event(), [0]
        clients = [
            asyncio.create_task(_first_data_then_rest(server.url, ready, count)) for _ in range(5)
        ]
        await asyncio.wait_for(ready.wait(), 20)
        server.signal(signal.SIGTERM)
        streams = await asyncio.wait_for(asyncio.gather(*clients), 30)
        status = await asyncio.to_thread(server.stop)
    # Uvicorn shuts down gracefully, then re-raises the signal so the exit status shows it.
    assert status in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.output
    for events in streams:
        assert events[-1] in ("end", "error")
        assert events.count("data") >= 1
    assert any(events[-1] == "error" for events in streams)  # replies outlast the grace period
