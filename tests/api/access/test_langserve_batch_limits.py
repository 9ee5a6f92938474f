"""A LangServe batch is held to what its runs would be held to one by one: an input cap, a
bounded number at once (LangServe alone starts every input together), and each input counted
against the caller's per-minute and open-stream limits."""

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio

MESSAGE = {"messages": [{"role": "user", "content": "hi"}]}
SLOW = Script(chunks=["o", "k"], delay=0.15)
"""Long enough (0.3 s) that inputs started together overlap at the upstream."""


def _model_calls(upstream: MockUpstream) -> int:
    return len([r for r in upstream.requests if r.path.endswith("/chat/completions")])


async def _batch(server: LiveServer, size: int, config: Any = None) -> httpx.Response:
    body: dict[str, Any] = {"inputs": [MESSAGE] * size}
    if config is not None:
        body["config"] = config
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        return await client.post("/langserve/chat/batch", json=body)


async def test_a_batch_over_the_input_cap_is_a_413_before_any_upstream_call(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, max_batch_inputs=3))
    upstream.default_script = Script(chunks=["ok"])
    response = await _batch(server, 4)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "batch_too_large"
    assert _model_calls(upstream) == 0
    assert (await _batch(server, 3)).status_code == 200
    assert _model_calls(upstream) == 3


async def test_a_batch_runs_at_most_the_server_concurrency_at_once(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, max_batch_concurrency=3))
    upstream.default_script = SLOW
    response = await _batch(server, 9)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == ["ok"] * 9
    assert _model_calls(upstream) == 9
    assert upstream.peak_concurrency() == 3


@pytest.mark.parametrize(
    "config", [{"max_concurrency": 2}, [{"max_concurrency": 5}] * 5 + [{"max_concurrency": 2}]]
)
async def test_a_client_max_concurrency_lowers_it_never_raises_it(
    start_server: ServerFactory, upstream: MockUpstream, config: Any
) -> None:
    server = start_server(upstream_settings(upstream, max_batch_concurrency=3))
    upstream.default_script = SLOW
    response = await _batch(server, 6, config)
    assert response.status_code == 200, response.text
    assert upstream.peak_concurrency() == 2
    upstream.reset()
    upstream.default_script = SLOW
    assert (await _batch(server, 6, {"max_concurrency": 50})).status_code == 200
    assert upstream.peak_concurrency() == 3


@pytest.mark.parametrize("value", [0, -1, "4", 1.5, True])
async def test_a_max_concurrency_that_is_not_a_positive_whole_number_is_422(
    start_server: ServerFactory, upstream: MockUpstream, value: Any
) -> None:
    server = start_server(upstream_settings(upstream))
    response = await _batch(server, 2, {"max_concurrency": value})
    assert response.status_code == 422, response.text
    assert "max_concurrency" in response.text
    assert _model_calls(upstream) == 0


async def test_each_input_counts_as_a_request_against_the_per_minute_limit(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, requests_per_minute=5))
    upstream.default_script = Script(chunks=["ok"])
    too_big = await _batch(server, 6)
    assert too_big.status_code == 413
    assert "in a minute (5)" in too_big.json()["error"]["message"]
    assert (await _batch(server, 4)).status_code == 200
    refused = await _batch(server, 2)  # 4 of 5 used (the 413 counted nothing)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert (await _batch(server, 1)).status_code == 200
    assert _model_calls(upstream) == 5


async def test_a_batch_runs_no_more_inputs_at_once_than_the_caller_has_stream_slots(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, max_streams_per_key=2))
    upstream.default_script = SLOW
    response = await _batch(server, 6)
    assert response.status_code == 200, response.text
    assert upstream.peak_concurrency() == 2


async def test_a_batch_is_refused_while_the_caller_uses_every_stream_slot(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, max_streams_per_key=1))
    upstream.enqueue(Script(chunks=["a", "b"], hold_after=1))
    upstream.default_script = Script(chunks=["ok"])
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("POST", "/chains/chat/stream", json={"input": MESSAGE}) as held,
    ):
        assert held.status_code == 200
        await upstream.wait_for_requests_async(1)
        refused = await _batch(server, 2)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_streams"
        upstream.release()
        await held.aread()
    await asyncio.sleep(0)  # the slot is freed as the stream ends
    assert (await _batch(server, 2)).status_code == 200
    assert _model_calls(upstream) == 3


async def test_remote_runnable_max_concurrency_reaches_the_server(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    from langserve import RemoteRunnable

    server = start_server(upstream_settings(upstream))
    upstream.default_script = SLOW
    remote = RemoteRunnable(f"{server.url}/langserve/chat")
    outputs = await remote.abatch([MESSAGE] * 4, config={"max_concurrency": 2})
    assert outputs == ["ok"] * 4
    assert upstream.peak_concurrency() == 2
