"""Limits shared through Redis by every worker, and runs that outlive their stream keep its slot."""

import asyncio
import logging
import uuid

import httpx
import pytest
from redis.asyncio import Redis

from chainserve.api.access.limit_counts_redis import RedisRequestRate, RedisStreamSlots
from tests.api.streaming import chat_input
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.process import free_port

pytestmark = pytest.mark.asyncio


def _key() -> str:
    return f"sk-shared-{uuid.uuid4().hex}"  # a new caller per test: nothing left from another


async def test_two_servers_on_one_redis_share_the_request_rate(
    start_server: ServerFactory, redis_url: str
) -> None:
    key = _key()
    settings = offline_settings(api_keys=key, requests_per_minute=3, redis_url=redis_url)
    a, b = start_server(settings), start_server(settings)
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=10, headers=auth) as client:
        statuses = [
            (await client.get(f"{server.url}/chains")).status_code for server in (a, b, a, b)
        ]
    assert statuses == [200, 200, 200, 429]


async def test_a_batch_counts_each_input_against_the_shared_rate(
    start_server: ServerFactory, redis_url: str
) -> None:
    key = _key()
    settings = offline_settings(api_keys=key, requests_per_minute=4, redis_url=redis_url)
    a, b = start_server(settings), start_server(settings)
    auth = {"Authorization": f"Bearer {key}"}
    batch = {"inputs": [{"messages": [{"role": "user", "content": "hi"}]}] * 3}
    async with httpx.AsyncClient(timeout=10, headers=auth) as client:
        first = await client.post(f"{a.url}/langserve/chat/batch", json=batch)
        second = await client.post(f"{b.url}/langserve/chat/batch", json=batch)
        last = await client.get(f"{b.url}/chains")
    assert (first.status_code, second.status_code, last.status_code) == (200, 429, 200)


async def test_two_servers_on_one_redis_share_the_stream_cap(
    start_server: ServerFactory, redis_url: str, upstream: MockUpstream
) -> None:
    key = _key()
    settings = upstream_settings(upstream, api_keys=key, max_streams_per_key=1, redis_url=redis_url)
    a, b = start_server(settings), start_server(settings)
    auth = {"Authorization": f"Bearer {key}"}
    upstream.enqueue(Script(chunks=["a", "b"], hold_after=1), Script(chunks=["c"]))
    async with httpx.AsyncClient(timeout=10, headers=auth) as client:
        async with client.stream(
            "POST", f"{a.url}/chains/chat/stream", json=chat_input("hi")
        ) as first:
            assert first.status_code == 200
            await upstream.wait_for_requests_async(1)
            refused = await client.post(f"{b.url}/chains/chat/stream", json=chat_input("hi"))
            upstream.release()
            await first.aread()
        for _ in range(50):  # the run frees its share of the slot a moment after it ends
            allowed = await client.post(f"{b.url}/chains/chat/stream", json=chat_input("hi"))
            if allowed.status_code != 429:
                break
            await asyncio.sleep(0.05)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_streams"
    assert allowed.status_code == 200


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_run_that_outlives_its_stream_keeps_the_callers_slot(
    start_server: ServerFactory, upstream: MockUpstream, request: pytest.FixtureRequest, store: str
) -> None:
    """`on_disconnect: "continue"` cannot be used to run more than the cap at once."""
    key = _key()
    redis = {"redis_url": request.getfixturevalue("redis_url")} if store == "redis" else {}
    server = start_server(upstream_settings(upstream, api_keys=key, max_streams_per_key=1, **redis))
    auth = {"Authorization": f"Bearer {key}"}
    upstream.enqueue(Script(chunks=["a", "b", "c"], hold_after=1), Script(chunks=["d"]))
    body = {**chat_input("hi"), "on_disconnect": "continue"}
    async with httpx.AsyncClient(base_url=server.url, timeout=10, headers=auth) as client:
        async with client.stream("POST", "/chains/chat/stream", json=body) as first:
            assert first.status_code == 200
            await upstream.wait_for_requests_async(1)
            run_id = first.headers["x-run-id"]
        await asyncio.sleep(0.2)  # the hang-up is seen; the run goes on
        while_running = await client.post("/chains/chat/stream", json=chat_input("hi"))
        upstream.release()
        for _ in range(100):
            record = (await client.get(f"/runs/{run_id}")).json()
            if record["status"] != "running":
                break
            await asyncio.sleep(0.05)
        for _ in range(50):  # released a loop turn or two after the run ends
            after = await client.post("/chains/chat/stream", json=chat_input("hi"))
            if after.status_code != 429:
                break
            await asyncio.sleep(0.05)
    assert while_running.status_code == 429
    assert record["status"] == "done"
    assert after.status_code == 200


async def test_a_slot_held_by_a_dead_worker_frees_when_its_lease_runs_out(redis_url: str) -> None:
    caller = f"key-{uuid.uuid4().hex[:12]}"
    dead = RedisStreamSlots(Redis.from_url(redis_url), 1, lease=0.5)
    alive = RedisStreamSlots(Redis.from_url(redis_url), 1, lease=0.5)
    try:
        assert await dead.acquire(caller) is not None
        assert dead._renewer is not None
        dead._renewer.cancel()  # the worker died: nobody renews its lease
        assert await alive.acquire(caller) is None
        await asyncio.sleep(0.7)
        assert await alive.acquire(caller) is not None
    finally:
        await dead.aclose()
        await alive.aclose()


async def test_held_slots_are_renewed_past_their_lease(redis_url: str) -> None:
    caller = f"key-{uuid.uuid4().hex[:12]}"
    holder = RedisStreamSlots(Redis.from_url(redis_url), 1, lease=0.3)
    other = RedisStreamSlots(Redis.from_url(redis_url), 1, lease=0.3)
    try:
        slot = await holder.acquire(caller)
        assert slot is not None
        await asyncio.sleep(1.0)  # three leases long: only renewal keeps it
        assert await other.acquire(caller) is None
        await holder.release(caller, slot)
        assert await other.acquire(caller) is not None
    finally:
        await holder.aclose()
        await other.aclose()


async def test_an_unreachable_redis_lets_requests_through_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    rate = RedisRequestRate(Redis.from_url(nowhere), 1)
    slots = RedisStreamSlots(Redis.from_url(nowhere), 1)
    try:
        with caplog.at_level(logging.WARNING, logger="chainserve.limits"):
            assert [await rate.take("key-x") for _ in range(3)] == [None] * 3
            assert await slots.acquire("key-x") is not None
            assert await slots.acquire("key-x") is not None
    finally:
        await rate.aclose()
        await slots.aclose()
    assert "limits not enforced" in caplog.text


async def test_a_caller_rejoining_its_running_run_needs_no_second_slot(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """Reconnecting to a run (as EventSource does after a drop) is not refused by the cap the
    run itself is holding."""
    key = _key()
    server = start_server(upstream_settings(upstream, api_keys=key, max_streams_per_key=1))
    auth = {"Authorization": f"Bearer {key}"}
    upstream.enqueue(Script(chunks=["a", "b", "c"], hold_after=1))
    body = {**chat_input("hi"), "on_disconnect": "continue"}
    async with httpx.AsyncClient(base_url=server.url, timeout=10, headers=auth) as client:
        async with client.stream("POST", "/chains/chat/stream", json=body) as first:
            assert first.status_code == 200
            await upstream.wait_for_requests_async(1)
            run_id = first.headers["x-run-id"]
        async with client.stream("GET", f"/runs/{run_id}/stream") as rejoined:
            other = await client.post("/chains/chat/stream", json=chat_input("hi"))
            upstream.release()
            text = (await rejoined.aread()).decode()
    assert rejoined.status_code == 200
    assert "event: end" in text
    assert other.status_code == 429  # the run and its rejoined stream still hold one slot
