"""A run whose worker dies is recorded as failed (`worker_lost`) within about its lease, and a
cancel that did not take effect is never answered as if it had."""

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.streaming import chat_input, read_then_hang_up
from tests.conftest import FAILED
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.process import ServerProcess
from tests.support.redis_workers import redis_workers
from tests.support.sse import Event, SSEParser

pytestmark = pytest.mark.asyncio

TOKENS = [f" w{i}" for i in range(400)]


def _workers(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_url: str,
    upstream: MockUpstream,
    lease: str,
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = {"CHAINSERVE_RUN_LEASE_SECONDS": lease, "CHAINSERVE_KEEPALIVE_SECONDS": "0.5"}
    yield from redis_workers(request, FAILED, tmp_path, redis_url, upstream, **env)


@pytest.fixture
def workers(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, upstream: MockUpstream
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two workers on one Redis, with a 2 s run lease."""
    yield from _workers(request, tmp_path, redis_url, upstream, "2")


@pytest.fixture
def long_lease_workers(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, upstream: MockUpstream
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two workers on one Redis, with a lease longer than a cancel waits."""
    yield from _workers(request, tmp_path, redis_url, upstream, "60")


async def _start_on(a: ServerProcess, upstream: MockUpstream) -> str:
    upstream.enqueue(Script(chunks=TOKENS, delay=0.05))
    first = await read_then_hang_up(a.url, {**chat_input(), "on_disconnect": "continue"}, keep=4)
    run_id: str = first[0].json()["run_id"]
    return run_id


async def _join(url: str, run_id: str) -> list[Event]:
    events: list[Event] = []
    parser = SSEParser()
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream("GET", f"/runs/{run_id}/stream") as response,
    ):
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            events.extend(parser.feed(chunk))
    return events


async def test_a_join_on_another_worker_ends_with_worker_lost_when_the_runs_worker_is_killed(
    workers: tuple[ServerProcess, ServerProcess], upstream: MockUpstream
) -> None:
    a, b = workers
    run_id = await _start_on(a, upstream)
    join = asyncio.create_task(_join(b.url, run_id))
    await asyncio.sleep(0.3)
    a.signal(signal.SIGKILL)
    events = await asyncio.wait_for(join, timeout=30)
    assert events[-1].event == "error"
    assert events[-1].json()["code"] == "worker_lost"
    assert events[-1].json()["retryable"] is True
    assert [e.event for e in events].count("error") == 1
    async with httpx.AsyncClient(timeout=10) as client:
        run = (await client.get(f"{b.url}/runs/{run_id}")).json()
    assert run["status"] == "error"
    assert run["error"]["code"] == "worker_lost"


async def test_get_run_on_another_worker_reports_worker_lost_after_the_lease(
    workers: tuple[ServerProcess, ServerProcess], upstream: MockUpstream
) -> None:
    a, b = workers
    run_id = await _start_on(a, upstream)
    a.signal(signal.SIGKILL)
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(300):  # polls for up to 30 s; the lease is 2 s
            run = (await client.get(f"{b.url}/runs/{run_id}")).json()
            if run["status"] != "running":
                break
            await asyncio.sleep(0.1)
    assert run["status"] == "error"
    assert run["error"]["code"] == "worker_lost"
    tail = await _join(b.url, run_id)
    assert tail[-1].json()["code"] == "worker_lost"


async def test_a_cancel_of_a_run_whose_worker_was_killed_reports_worker_lost(
    workers: tuple[ServerProcess, ServerProcess], upstream: MockUpstream
) -> None:
    a, b = workers
    run_id = await _start_on(a, upstream)
    a.signal(signal.SIGKILL)
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{b.url}/runs/{run_id}/cancel")
        if response.status_code == 504:  # the lease had not run out within the cancel's wait
            response = await client.post(f"{b.url}/runs/{run_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "error"
    assert response.json()["error"]["code"] == "worker_lost"


async def test_a_cancel_that_did_not_take_effect_is_a_504_cancel_timeout_not_a_200(
    long_lease_workers: tuple[ServerProcess, ServerProcess], upstream: MockUpstream
) -> None:
    a, b = long_lease_workers
    run_id = await _start_on(a, upstream)
    a.signal(signal.SIGSTOP)  # alive, holding its lease, but deaf to the cancel
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(f"{b.url}/runs/{run_id}/cancel")
            run = (await client.get(f"{b.url}/runs/{run_id}")).json()
    finally:
        a.signal(signal.SIGCONT)
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "cancel_timeout"
    assert error["retryable"] is True
    assert error["run_id"] == run_id
    assert "may still stop" in error["message"]
    assert run["status"] == "running"
