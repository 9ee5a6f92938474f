"""Per-caller limits: a 429 with Retry-After past the rate or the open-stream cap, per key."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from chainserve.api.access.limit_counts import LocalRequestRate, LocalStreamSlots
from chainserve.api.settings import Settings
from tests.api.streaming import chat_input
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script

KEY_A, KEY_B = "sk-limits-a-0123456789", "sk-limits-b-0123456789"


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.asyncio
async def test_past_the_rate_a_caller_gets_429_with_retry_after_and_others_do_not(
    start_server: ServerFactory,
) -> None:
    server = start_server(offline_settings(api_keys=f"{KEY_A},{KEY_B}", requests_per_minute=3))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        statuses = [(await client.get("/chains", headers=_as(KEY_A))).status_code for _ in range(3)]
        refused = await client.get("/chains", headers=_as(KEY_A))
        other = await client.get("/chains", headers=_as(KEY_B))
        health = await client.get("/health")
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    error = refused.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["retryable"] is True
    assert KEY_A not in refused.text
    assert other.status_code == 200
    assert health.status_code == 200


@contextlib.asynccontextmanager
async def _open_stream(
    client: httpx.AsyncClient, key: str, path: str = "/chains/chat/stream"
) -> AsyncIterator[httpx.Response]:
    async with client.stream("POST", path, json=chat_input("hi"), headers=_as(key)) as response:
        yield response


@pytest.fixture
def slot_settings(upstream: MockUpstream) -> Settings:
    return upstream_settings(upstream, api_keys=f"{KEY_A},{KEY_B}", max_streams_per_key=1)


@pytest.mark.asyncio
async def test_a_second_open_stream_is_refused_until_the_first_ends(
    start_server: ServerFactory, slot_settings: Settings, upstream: MockUpstream
) -> None:
    server = start_server(slot_settings)
    upstream.enqueue(
        Script(chunks=["a", "b", "c"], hold_after=1), Script(chunks=["x"]), Script(chunks=["y"])
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        async with _open_stream(client, KEY_A) as first:
            assert first.status_code == 200
            await upstream.wait_for_requests_async(1)
            second = await client.post(
                "/chains/chat/stream", json=chat_input("hi"), headers=_as(KEY_A)
            )
            assert second.status_code == 429
            assert second.headers["retry-after"] == "1"
            assert second.json()["error"]["code"] == "too_many_streams"
            other_key = await client.post(
                "/chains/chat/stream", json=chat_input("hi"), headers=_as(KEY_B)
            )
            assert other_key.status_code == 200
            invoked = await client.post(
                "/chains/chat/invoke", json=chat_input("hi"), headers=_as(KEY_A)
            )
            assert invoked.status_code == 200  # not a stream: no slot needed
            upstream.release()
            await first.aread()
        again = await client.post("/chains/chat/stream", json=chat_input("hi"), headers=_as(KEY_A))
    assert again.status_code == 200
    assert len(upstream.requests) == 4  # the refused stream never reached the model


@pytest.mark.asyncio
async def test_a_hang_up_frees_the_slot_at_once(
    start_server: ServerFactory, slot_settings: Settings, upstream: MockUpstream
) -> None:
    server = start_server(slot_settings)
    upstream.enqueue(Script(chunks=["a", "b"], hold_after=1), Script(chunks=["z"]))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        async with _open_stream(client, KEY_A) as first:
            assert first.status_code == 200
            await upstream.wait_for_requests_async(1)
        await upstream.wait_for_disconnect_async(0)
        for _ in range(50):  # the server notices the hang-up within a loop turn or two
            retry = await client.post(
                "/chains/chat/stream", json=chat_input("hi"), headers=_as(KEY_A)
            )
            if retry.status_code != 429:
                break
            await asyncio.sleep(0.05)
    assert retry.status_code == 200


@pytest.mark.asyncio
async def test_openai_streaming_completions_take_a_slot_and_plain_ones_do_not(
    start_server: ServerFactory, slot_settings: Settings, upstream: MockUpstream
) -> None:
    server = start_server(slot_settings)
    upstream.enqueue(Script(chunks=["a", "b"], hold_after=1), Script(chunks=["p"]))
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("POST", "/v1/chat/completions", json=body, headers=_as(KEY_A)) as first,
    ):
        assert first.status_code == 200
        await upstream.wait_for_requests_async(1)
        refused = await client.post("/v1/chat/completions", json=body, headers=_as(KEY_A))
        plain = await client.post(
            "/v1/chat/completions", json={**body, "stream": False}, headers=_as(KEY_A)
        )
        upstream.release()
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"  # the SDKs' RateLimitError
    assert plain.status_code == 200


@pytest.mark.asyncio
async def test_the_bucket_refills_at_the_configured_rate() -> None:
    now = [0.0]
    rate = LocalRequestRate(60, clock=lambda: now[0])
    assert [await rate.take("k") for _ in range(60)] == [None] * 60  # a full minute's burst
    wait = await rate.take("k")
    assert wait == pytest.approx(1.0)
    now[0] += 0.5
    assert await rate.take("k") == pytest.approx(0.5)
    now[0] += 0.5
    assert await rate.take("k") is None
    assert await rate.take("other") is None


@pytest.mark.asyncio
async def test_slots_count_per_caller_and_free_on_release() -> None:
    slots = LocalStreamSlots(2)
    first, second = await slots.acquire("a"), await slots.acquire("a")
    assert first is not None
    assert second is not None
    assert first != second
    assert await slots.acquire("a") is None
    assert await slots.acquire("b")
    await slots.release("a", first)
    assert slots.open("a") == 1
    third = await slots.acquire("a")
    assert third
    await slots.release("a", second)
    await slots.release("a", third)
    assert slots.open("a") == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "counted"),
    [
        ("POST", "/chains/chat/ui", None, True),
        ("POST", "/langserve/chat/c/N4XyA/stream", None, True),
        ("POST", "/langserve/chat/c/N4XyA/stream_events", None, True),
        ("POST", "/chains/chat/stream\n", None, True),  # %0A: the route still matches
        ("POST", "/v1/chat/completions\n", b'{"stream": true}', True),
        ("POST", "/v1/chat/completions", b'{"stream": 1}', True),
        ("POST", "/v1/chat/completions", b'{"stream": "true"}', True),
        ("POST", "/v1/chat/completions", b'{"stream": "false"}', False),
        ("POST", "/v1/chat/completions", b'{"stream": false}', False),
        ("POST", "/v1/chat/completions", b"{}", False),
        ("POST", "/chains/chat/invoke", None, False),
    ],
)
def test_every_way_of_asking_for_a_stream_takes_a_slot(
    method: str, path: str, body: bytes | None, counted: bool
) -> None:
    from chainserve.api.access.body_guard import BODY
    from chainserve.api.access.limits import is_stream

    scope = {"type": "http", "method": method, "path": path, BODY: body}
    assert is_stream(scope) is counted


@pytest.mark.asyncio
async def test_refilled_buckets_are_forgotten_as_new_callers_arrive() -> None:
    """Without keys every address is a caller: buckets must not pile up, nor be scanned."""
    now = [0.0]
    rate = LocalRequestRate(6, clock=lambda: now[0])
    for i in range(1000):
        await rate.take(f"addr-{i}")
    assert len(rate._buckets) == 1000
    now[0] += 60  # every bucket has refilled
    for i in range(400):
        await rate.take(f"later-{i}")
    assert len(rate._buckets) == 1000 + 400 - 800
    assert await rate.take("later-0") is None  # a caller seen again keeps its bucket
