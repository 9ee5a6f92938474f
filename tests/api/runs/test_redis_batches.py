"""The Redis run log's batches: the running worker serves its followers from memory, other
workers read every event exactly once and in order from a few script calls, a flush whose
reply was lost is not written twice, and a run recorded as lost elsewhere stops being sent."""

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from chainserve.api.runs.log import RunEvent, RunRecord
from chainserve.api.runs.log_redis import RedisRunLog

pytestmark = pytest.mark.asyncio

Workers = Callable[..., RedisRunLog]


@pytest_asyncio.fixture
async def worker(redis_url: str) -> AsyncIterator[Workers]:
    """Run logs as separate workers would open them, on one Redis."""
    opened: list[RedisRunLog] = []

    def make(flush_interval: float = 0.005, lease: float = 30.0) -> RedisRunLog:
        log = RedisRunLog(redis_url, ttl=60, max_events=100_000, flush_interval=flush_interval,
                          lease=lease)  # fmt: skip
        opened.append(log)
        return log

    yield make
    for log in opened:
        await log.aclose()


async def _start(log: RedisRunLog) -> str:
    run_id = str(uuid.uuid4())
    record = RunRecord(run_id, "chat", {"provider": "offline", "name": "x"}, time.time())
    await log.create(record, json.dumps({"run_id": run_id}))
    return run_id


async def _follow(log: RedisRunLog, run_id: str) -> list[RunEvent]:
    """Read until the terminal event, as a stream does."""
    events: list[RunEvent] = []
    after = -1
    while not events or events[-1].event not in ("end", "error"):
        batch = await log.read(run_id, after, 5)
        events.extend(batch)
        after = events[-1].seq if events else after
    return events


async def _script_calls(redis_url: str) -> int:
    async with Redis.from_url(redis_url, decode_responses=True) as redis:
        stats: Any = await redis.info("commandstats")
    return sum(
        int(value["calls"]) for name, value in stats.items() if name.startswith("cmdstat_evalsha")
    )


async def test_another_worker_reads_every_event_once_from_a_few_script_calls(
    worker: Workers, redis_url: str
) -> None:
    running, other = worker(), worker()
    run_id = await _start(running)
    follower = asyncio.create_task(_follow(other, run_id))
    calls_before = await _script_calls(redis_url)
    for i in range(5000):
        await running.append(run_id, "data", json.dumps(f"t{i}"), f"t{i}")
        if i % 500 == 0:
            await asyncio.sleep(0.01)  # the provider's next read
    await running.finish(run_id, {"status": "done"}, "end", "{}")
    events = await follower
    assert [e.seq for e in events] == list(range(5002))
    assert [json.loads(e.data) for e in events[1:-1]] == [f"t{i}" for i in range(5000)]
    assert (events[0].event, events[-1].event) == ("metadata", "end")
    # A handful of flushes and the end, not one call per event.
    assert await _script_calls(redis_url) - calls_before < 30
    record = await other.get(run_id)
    assert record is not None
    assert (record.status, record.last_seq) == ("done", 5001)
    assert record.output == "".join(f"t{i}" for i in range(5000))


async def test_the_running_workers_followers_read_from_memory_before_any_flush(
    worker: Workers,
) -> None:
    running, other = worker(flush_interval=30.0), worker()
    run_id = await _start(running)
    await running.append(run_id, "data", '"now"', "now")
    assert [e.data for e in await running.read(run_id, 0, 0)] == ['"now"']
    assert await other.read(run_id, 0, 0) == []  # Redis has it at the next flush
    await running.finish(run_id, {"status": "done"}, "end", "{}")
    assert [e.event for e in await other.read(run_id, 0, 0)] == ["data", "end"]


async def test_a_flush_whose_reply_was_lost_is_not_written_twice(
    worker: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, other = worker(flush_interval=30.0), worker()
    run_id = await _start(running)
    await running.append(run_id, "data", '"a"', "a")
    batches: Any = running._batches  # the one seam for a lost reply
    script = batches._script

    async def applied_then_lost(**kwargs: Any) -> Any:
        await script(**kwargs)
        raise RedisConnectionError("reply lost")

    monkeypatch.setattr(batches, "_script", applied_then_lost)
    with pytest.raises(RedisConnectionError):
        await batches.flush()
    monkeypatch.setattr(batches, "_script", script)
    await running.append(run_id, "data", '"b"', "b")
    await running.finish(run_id, {"status": "done"}, "end", "{}")
    events = await other.read(run_id, -1, 0)
    assert [(e.seq, e.data) for e in events[1:]] == [(1, '"a"'), (2, '"b"'), (3, "{}")]
    record = await other.get(run_id)
    assert record is not None
    assert (record.output, record.status) == ("ab", "done")


async def test_a_run_recorded_as_lost_elsewhere_stops_being_sent_but_its_followers_here_go_on(
    worker: Workers, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its worker stalled past the lease: another worker records it as lost; the stalled
    worker's later events stay on it, with no error, and Redis keeps the lost ending."""
    running, other = worker(flush_interval=30.0), worker()
    run_id = await _start(running)
    async with Redis.from_url(redis_url) as redis:
        await redis.delete(f"chainserve:run:{run_id}:lease")
    lost = await other.get(run_id)
    assert lost is not None
    assert lost.status == "error"
    await running.append(run_id, "data", '"late"', "late")
    with caplog.at_level(logging.WARNING, "chainserve.runs"):
        await running.finish(run_id, {"status": "done"}, "end", "{}")
    assert "its events are no longer sent to Redis" in caplog.text
    assert [e.event for e in await running.read(run_id, 0, 0)] == ["data", "end"]
    seen = await other.read(run_id, -1, 0)
    assert [e.event for e in seen] == ["metadata", "error"]
    record = await other.get(run_id)
    assert record is not None
    assert record.error is not None
    assert record.error["code"] == "worker_lost"
