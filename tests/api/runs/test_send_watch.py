"""SendWatch: only a write that is stuck past the limit counts, never idle time between writes."""

import asyncio

import pytest
from starlette.types import Message

from chainserve.api.runs.send_watch import SendWatch

pytestmark = pytest.mark.asyncio


async def test_idle_time_between_quick_writes_never_counts() -> None:
    sent: list[object] = []

    async def send(message: Message) -> None:
        sent.append(message)

    stuck: list[bool] = []
    watch = SendWatch(send, 0.05, lambda: stuck.append(True))
    for _ in range(4):
        await watch.send({"type": "http.response.body"})
        await asyncio.sleep(0.06)  # longer than the limit, but no write is waiting
    watch.close()
    assert stuck == []
    assert len(sent) == 4


async def test_a_write_stuck_past_the_limit_is_reported_once() -> None:
    never = asyncio.Event()

    async def send(message: Message) -> None:
        await never.wait()

    stuck: list[bool] = []
    watch = SendWatch(send, 0.05, lambda: stuck.append(True))
    task = asyncio.create_task(watch.send({"type": "http.response.body"}))
    for _ in range(100):
        if stuck:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    watch.close()
    assert stuck == [True]
    assert watch.stuck
