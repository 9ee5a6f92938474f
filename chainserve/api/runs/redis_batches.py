"""A worker's new run events, sent to Redis in batches: everything every run on this worker
wrote since the last flush, in one script call, at most `interval` seconds after the first.

Why: one Redis round trip per token (a script call each) cost 19 times the in-memory log's
CPU per chunk, and 37 µs of redis-server CPU per chunk. The worker running a run already
serves its own followers from memory (`log_redis.py`); Redis only needs the events for
followers on other workers and for what must outlive this one, and those can trail by a few
milliseconds.

What keeps a batch safe:
- Each run's events in one flush are one stream entry whose id is the last event's
  (`0-<seq + 1>`), holding `[[event, data], ...]`; a reader asking for events after N reads
  the entries with a greater id and drops the ones it has (`unpack`). Ids stay contiguous.
- A flush writes a run's events only if Redis's count for the run is their first sequence
  number, so they reach Redis in order, exactly once: a segment Redis already holds (a flush
  whose reply was lost) is skipped, and a run that another worker has meanwhile recorded as
  lost (its lease ran out) fails the check, so this worker stops sending its events and
  says so once.
- Flushes never overlap (a lock). A failed one (Redis away) is tried again, its segments
  before what came after them, up to `MAX_PENDING_EVENTS`; beyond that the oldest runs'
  events are dropped from the mirror (their local followers still get everything) and
  logged.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("chainserve.runs")

MAX_PENDING_EVENTS = 200_000
"""Events held for Redis while it is unreachable, across every run of the worker."""

_RETRY_SECONDS = 0.5

# ARGV[1]: [ttl, max entries, [[run id, first seq, end seq, events json, output,
# refresh ttl (0/1), sealed (0/1)], ...]] (a run's segments in order); ARGV[2]: the key
# prefix. Returns the run ids not written: Redis's count was not the segment's first seq
# (nor, for a segment sent before, its end while the run still runs). Keys are built here
# from the run ids: one script call covers every run of the batch, which a Redis Cluster
# would refuse (chainserve does not use one).
FLUSH = """
local batch = cjson.decode(ARGV[1])
local ttl, maxlen = batch[1], batch[2]
local skipped = {}
for _, run in ipairs(batch[3]) do
  local base = ARGV[2] .. run[1]
  local count = redis.call('GET', base .. ':seq')
  if run[7] == 1 and count == run[3]
      and cjson.decode(redis.call('GET', base) or '{}')['status'] == 'running' then
    -- already written: a flush whose reply was lost (not a reaper's end of the run)
  elseif count ~= run[2] then
    skipped[#skipped + 1] = run[1]
  else
    redis.call('XADD', base .. ':events', 'MAXLEN', maxlen, '0-' .. run[3], 'b', run[4])
    if run[5] ~= '' then redis.call('APPEND', base .. ':output', run[5]) end
    redis.call('SET', base .. ':seq', run[3], 'KEEPTTL')
    if run[6] == 1 then
      for _, key in ipairs({base .. ':events', base .. ':seq', base .. ':output', base}) do
        redis.call('EXPIRE', key, ttl)
      end
    end
  end
end
return skipped
"""


def pack(events: list[tuple[str, str]]) -> str:
    """A stream entry's value: its events, oldest first."""
    return orjson.dumps(events).decode()


def unpack(entry_id: str, value: str) -> list[tuple[int, str, str]]:
    """(seq, event, data) of each event in an entry (its id is the last event's seq + 1)."""
    events = orjson.loads(value)
    last = int(entry_id.split("-")[1]) - 1
    first = last - len(events) + 1
    return [(first + i, str(event), str(data)) for i, (event, data) in enumerate(events)]


@dataclass
class _Segment:
    """Consecutive events of one run, sent as one stream entry."""

    first: int
    """The seq of its first event: Redis's count of the run's events when it is written."""
    events: list[tuple[str, str]] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    sealed: bool = False
    """Part of a flush that failed: sent again as it is, since Redis may hold it already."""


class RunBatches:
    """Collects a worker's run events and flushes them to Redis; see the module docstring."""

    def __init__(
        self, redis: Redis, *, prefix: str, interval: float, ttl: int, max_entries: int
    ) -> None:
        self._redis = redis
        self._script = redis.register_script(FLUSH)
        self._prefix = prefix
        self._interval = interval
        self._ttl = ttl
        self._max_entries = max_entries
        self._pending: dict[str, list[_Segment]] = {}
        self._held = 0
        self._refreshed: dict[str, float] = {}
        """When each run's keys last had their TTL renewed (renewed every quarter TTL)."""
        self._stopped: set[str] = set()
        """Runs whose events no longer go to Redis (recorded as lost elsewhere, or dropped)."""
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None

    def add(self, run_id: str, seq: int, event: str, data: str, output: str) -> None:
        segments = self._pending.get(run_id)
        if segments is None:
            if run_id in self._stopped:
                return
            segments = self._pending[run_id] = [_Segment(seq)]
        elif segments[-1].sealed:
            segments.append(_Segment(seq))
        segment = segments[-1]
        segment.events.append((event, data))
        if output:
            segment.output.append(output)
        self._held += 1
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._due)

    def started(self, run_id: str) -> None:
        """A run whose keys were just written with their TTL."""
        self._refreshed[run_id] = time.monotonic()

    def forget(self, run_id: str) -> None:
        """A finished run: nothing more of it is sent."""
        self._refreshed.pop(run_id, None)
        self._stopped.discard(run_id)

    def _due(self) -> None:
        self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._background_flush(), name="run-batches")

    async def _background_flush(self) -> None:
        try:
            await self.flush()
        except (RedisError, OSError) as exc:
            logger.warning("run events not sent to Redis (%s); trying again", exc)

    async def flush(self) -> None:
        """Send everything pending now (a run's terminal event waits for this)."""
        async with self._lock:
            batch, self._pending, held = self._pending, {}, self._held
            self._held = 0
            if not batch:
                return
            try:
                skipped = await self._script(args=[self._payload(batch), self._prefix])
            except BaseException:
                self._hold_again(batch, held)
                raise
        for run_id in dict.fromkeys(skipped):
            self._stop(run_id, "another worker recorded it as lost (its lease ran out)")

    def _payload(self, batch: dict[str, list[_Segment]]) -> str:
        now = time.monotonic()
        every = self._ttl / 4
        runs: list[list[Any]] = []
        for run_id, segments in batch.items():
            refresh = now - self._refreshed.get(run_id, 0.0) >= every
            if refresh:
                self._refreshed[run_id] = now
            for segment in segments:
                end = segment.first + len(segment.events)
                output = "".join(segment.output)
                entry = [run_id, str(segment.first), str(end), pack(segment.events), output]
                runs.append([*entry, int(refresh), int(segment.sealed)])
        try:
            return orjson.dumps([self._ttl, self._max_entries, runs]).decode()
        except orjson.JSONEncodeError:  # a lone surrogate in some output text
            for run in runs:
                run[4] = run[4].encode("utf-8", "replace").decode("utf-8")
            return orjson.dumps([self._ttl, self._max_entries, runs]).decode()

    def _hold_again(self, batch: dict[str, list[_Segment]], held: int) -> None:
        """Put a failed batch back in front of what arrived since, within the bound."""
        for segments in batch.values():
            for segment in segments:
                segment.sealed = True
        for run_id, later in self._pending.items():
            batch[run_id] = [*batch.get(run_id, []), *later]
        self._pending, self._held = batch, held + self._held
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(_RETRY_SECONDS, self._due)
        while self._held > MAX_PENDING_EVENTS and self._pending:
            run_id = next(iter(self._pending))
            self._held -= sum(len(s.events) for s in self._pending.pop(run_id))
            self._stop(run_id, "Redis was unreachable for too long")

    def _stop(self, run_id: str, why: str) -> None:
        self._stopped.add(run_id)
        logger.warning(
            "run %s: its events are no longer sent to Redis: %s; followers on this worker "
            "still get them",
            run_id,
            why,
        )

    async def aclose(self) -> None:
        """Send what is pending (best effort) and stop."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(RedisError, OSError):
            await self.flush()
        if self._timer is not None:  # a failed last flush scheduled a retry: not any more
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            self._flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await self._flushing
