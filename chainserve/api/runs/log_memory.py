"""The in-process run log: the default for a single worker; bounded, with a TTL."""

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from chainserve.api.runs.event_window import EventWindow
from chainserve.api.runs.log import RunEvent, RunGone, RunRecord


@dataclass
class _Entry:
    record: RunRecord
    expires_at: float
    window: EventWindow
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    """Readers waiting for the next event; each is woken once, then forgotten."""

    def notify(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _time_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class MemoryRunLog:
    """Runs in a dict, oldest evicted first; each keeps its last `max_events` events."""

    def __init__(self, *, ttl: float, max_events: int, max_runs: int = 1_000) -> None:
        self._ttl = ttl
        self._max_events = max_events
        self._max_runs = max_runs
        self._runs: OrderedDict[str, _Entry] = OrderedDict()
        self._latest: OrderedDict[str, tuple[str, float]] = OrderedDict()
        """key → (run id, expiry), bounded like the runs it points at."""

    def _entry(self, run_id: str) -> _Entry:
        entry = self._runs.get(run_id)
        if entry is None or entry.expires_at < time.monotonic():
            self._runs.pop(run_id, None)
            raise KeyError(run_id)
        return entry

    def _evict(self) -> None:
        now = time.monotonic()
        while self._runs:
            oldest = next(iter(self._runs.values()))
            if len(self._runs) <= self._max_runs and oldest.expires_at >= now:
                break
            self._runs.popitem(last=False)

    async def create(self, record: RunRecord, metadata: str) -> None:
        self._evict()
        self._runs[record.run_id] = _Entry(
            record, time.monotonic() + self._ttl, EventWindow(self._max_events)
        )
        await self.append(record.run_id, "metadata", metadata)

    async def append(self, run_id: str, event: str, data: str, output: str = "") -> int:
        entry = self._entry(run_id)
        record = entry.record
        record.last_seq += 1
        record.output += output
        entry.window.append(event, data)
        entry.expires_at = time.monotonic() + self._ttl
        self._runs.move_to_end(run_id)
        entry.notify()
        return record.last_seq

    async def finish(self, run_id: str, changes: dict[str, Any], event: str, data: str) -> None:
        entry = self._entry(run_id)
        entry.record = replace(entry.record, **changes)
        await self.append(run_id, event, data)

    async def get(self, run_id: str) -> RunRecord | None:
        try:
            return replace(self._entry(run_id).record)
        except KeyError:
            return None

    async def read(self, run_id: str, after: int, wait: float) -> list[RunEvent]:
        entry = self._entry(run_id)
        if entry.record.last_seq <= after and wait > 0:
            # A bare future and one timer handle: this wait happens once per event per reader,
            # and `asyncio.timeout` (or an Event per append) costs several times as much.
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            entry.waiters.append(waiter)
            timer = loop.call_later(wait, _time_up, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                if waiter in entry.waiters:  # timed out or cancelled: not woken by an append
                    entry.waiters.remove(waiter)
        events = entry.window.since(after)
        if events is None:
            raise RunGone(run_id)
        return events

    async def remember_latest(self, key: str, run_id: str) -> None:
        self._latest[key] = (run_id, time.monotonic() + self._ttl)
        self._latest.move_to_end(key)
        while len(self._latest) > self._max_runs:
            self._latest.popitem(last=False)

    async def latest(self, key: str) -> str | None:
        run_id, expires_at = self._latest.get(key, (None, 0.0))
        if run_id is None or expires_at < time.monotonic():
            self._latest.pop(key, None)
            return None
        return run_id

    def holds(self, run_id: str) -> bool:
        """Whether the run is here (and not expired)."""
        entry = self._runs.get(run_id)
        return entry is not None and entry.expires_at >= time.monotonic()

    def forget(self, run_id: str) -> None:
        """Drop the run (its readers read it elsewhere from now on)."""
        self._runs.pop(run_id, None)

    async def publish_cancel(self, run_id: str) -> None:
        return None  # one process: the run manager cancels its own tasks directly

    async def cancellations(self) -> AsyncIterator[str]:
        await asyncio.Event().wait()  # nothing ever arrives from elsewhere
        yield ""  # pragma: no cover - unreachable, makes this an async generator

    async def aclose(self) -> None:
        self._runs.clear()
        self._latest.clear()
