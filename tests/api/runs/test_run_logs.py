"""Both run logs keep the same promises: numbering, waiting, bounds, finishing, expiry."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from chainserve.api.runs.log import RunGone, RunLog, RunRecord
from chainserve.api.runs.log_memory import MemoryRunLog
from chainserve.api.runs.log_redis import RedisRunLog

pytestmark = pytest.mark.asyncio

LogFactory = Callable[..., RunLog]


@pytest_asyncio.fixture(params=["memory", "redis"])
async def make_log(request: pytest.FixtureRequest) -> AsyncIterator[LogFactory]:
    opened: list[RunLog] = []

    def make(ttl: float = 60, max_events: int = 100) -> RunLog:
        if request.param == "redis":
            url = request.getfixturevalue("redis_url")
            log: RunLog = RedisRunLog(url, ttl=ttl, max_events=max_events)
        else:
            log = MemoryRunLog(ttl=ttl, max_events=max_events)
        opened.append(log)
        return log

    yield make
    for log in opened:
        await log.aclose()


async def _new_run(log: RunLog) -> str:
    run_id = str(uuid.uuid4())
    record = RunRecord(run_id, "chat", {"provider": "offline", "name": "x"}, time.time())
    await log.create(record, json.dumps({"run_id": run_id}))
    return run_id


async def test_events_are_numbered_from_zero_and_output_accumulates(make_log: LogFactory) -> None:
    log = make_log()
    run_id = await _new_run(log)
    assert await log.append(run_id, "data", '"a"', "a") == 1
    assert await log.append(run_id, "data", '"b"', "b") == 2
    events = await log.read(run_id, -1, 0)
    assert [(e.seq, e.event) for e in events] == [(0, "metadata"), (1, "data"), (2, "data")]
    assert [e.seq for e in await log.read(run_id, 1, 0)] == [2]
    record = await log.get(run_id)
    assert record is not None
    assert (record.output, record.last_seq, record.status) == ("ab", 2, "running")


async def test_read_waits_for_the_next_event_or_times_out(make_log: LogFactory) -> None:
    log = make_log()
    run_id = await _new_run(log)
    started = time.monotonic()
    assert await log.read(run_id, 0, 0.2) == []
    assert time.monotonic() - started >= 0.15

    async def later() -> None:
        await asyncio.sleep(0.1)
        await log.append(run_id, "data", '"x"', "x")

    writer = asyncio.create_task(later())
    events = await log.read(run_id, 0, 5)
    await writer
    assert [e.data for e in events] == ['"x"']


async def test_finish_updates_the_record_before_the_terminal_event(make_log: LogFactory) -> None:
    log = make_log()
    run_id = await _new_run(log)
    await log.finish(run_id, {"status": "done", "usage": {"output_tokens": 1}}, "end", "{}")
    record = await log.get(run_id)
    assert record is not None
    assert record.status == "done"
    assert record.usage == {"output_tokens": 1}
    assert (await log.read(run_id, 0, 0))[-1].event == "end"


async def test_events_past_the_window_are_gone_not_silently_skipped(make_log: LogFactory) -> None:
    log = make_log(max_events=10)
    run_id = await _new_run(log)
    for i in range(40):
        await log.append(run_id, "data", str(i))
    with pytest.raises(RunGone):
        await log.read(run_id, -1, 0)
    assert [e.seq for e in await log.read(run_id, 37, 0)] == [38, 39, 40]


async def test_unknown_and_expired_runs(make_log: LogFactory) -> None:
    log = make_log(ttl=1)
    assert await log.get("nope") is None
    with pytest.raises(KeyError):
        await log.read("nope", -1, 0)
    run_id = await _new_run(log)
    await asyncio.sleep(2.1)
    assert await log.get(run_id) is None


async def test_the_latest_run_noted_for_a_key_is_found_by_every_worker_sharing_the_log(
    make_log: LogFactory,
) -> None:
    """An AI SDK chat's page may come back to any worker: the note lives where the runs do."""
    log = make_log()
    first, second = await _new_run(log), await _new_run(log)
    assert await log.latest("chat-a") is None
    await log.remember_latest("chat-a", first)
    await log.remember_latest("chat-a", second)
    assert await log.latest("chat-a") == second
    assert await log.latest("chat-b") is None
    if isinstance(log, RedisRunLog):
        assert await make_log().latest("chat-a") == second


async def test_a_reader_that_fell_out_of_the_window_gets_a_lagged_error_not_a_gap() -> None:
    """Events are never silently skipped: the stream ends with an explicit `lagged` error."""
    from chainserve.api.runs.event_stream import RunEventStream

    log = MemoryRunLog(ttl=60, max_events=10)
    run_id = await _new_run(log)
    for i in range(40):
        await log.append(run_id, "data", json.dumps(str(i)))
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()
        return {}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    stream = RunEventStream(log, run_id, keepalive_seconds=1, hold_seconds=0.1)
    await stream({"type": "http"}, receive, send)  # type: ignore[arg-type]
    body = b"".join(m.get("body", b"") for m in sent)  # type: ignore[misc]
    assert b"event: error" in body
    assert b'"code":"lagged"' in body
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
