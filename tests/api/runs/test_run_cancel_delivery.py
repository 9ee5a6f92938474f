"""A cancel sent through Redis reaches the worker running the run, even one that missed it."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from chainserve.api.runs.log_redis import RedisRunLog
from chainserve.api.runs.manager import RunManager
from chainserve.api.runs.run import Run
from chainserve.chains.models.factory import ModelInfo

pytestmark = pytest.mark.asyncio


async def _endless() -> AsyncIterator[str]:
    while True:
        yield "token "
        await asyncio.sleep(0.01)


async def test_a_cancel_reaches_a_worker_that_subscribed_after_it_was_first_sent(
    redis_url: str,
) -> None:
    """Pub/sub keeps nothing for late subscribers (a worker starting, or back from a Redis
    outage): the cancelling worker sends again until the run has stopped."""
    running = RunManager(RedisRunLog(redis_url, ttl=60, max_events=1000))
    cancelling = RunManager(RedisRunLog(redis_url, ttl=60, max_events=1000))
    run = Run(chain="chat", model=ModelInfo("offline", "x"), model_name="x")
    try:
        await running.start(run, _endless())
        cancel = asyncio.create_task(cancelling.cancel(run.run_id))
        await asyncio.sleep(0.2)  # the first cancel went out to nobody
        assert not cancel.done()
        running.start_listening()
        record = await cancel
        assert record is not None
        assert record.status == "cancelled"
        assert record.output.startswith("token ")
    finally:
        for manager in (running, cancelling):
            await manager.aclose()
            await manager.log.aclose()


async def _swallows_the_first_cancel() -> AsyncIterator[str]:
    swallowed = False
    while True:
        yield "token "
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True  # as a library catching it by mistake would


async def test_a_cancel_a_library_swallowed_is_sent_again_until_the_run_stops(
    redis_url: str,
) -> None:
    running = RunManager(RedisRunLog(redis_url, ttl=60, max_events=1000))
    cancelling = RunManager(RedisRunLog(redis_url, ttl=60, max_events=1000))
    run = Run(chain="chat", model=ModelInfo("offline", "x"), model_name="x")
    running.start_listening()
    try:
        await asyncio.sleep(0.2)  # subscribed
        await running.start(run, _swallows_the_first_cancel())
        record = await cancelling.cancel(run.run_id)
        assert record is not None
        assert record.status == "cancelled"
    finally:
        for manager in (running, cancelling):
            await manager.aclose()
            await manager.log.aclose()
