"""The counts behind the per-caller limits, kept in this process (one worker, or one each).

`api/access/limit_counts_redis.py` keeps the same counts in Redis, shared by every worker and
replica.
"""

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class RequestRate(Protocol):
    per_minute: int

    async def take(self, caller: str, n: int = 1) -> float | None:
        """None if `caller` may make `n` requests now (and they are counted), else seconds
        until it may (`n` is never more than `per_minute`)."""

    async def aclose(self) -> None: ...


class StreamSlots(Protocol):
    per_caller: int

    async def acquire(self, caller: str) -> str | None:
        """A slot id if `caller` may open another stream (and it is counted), else None."""

    async def release(self, caller: str, slot: str) -> None: ...

    async def aclose(self) -> None: ...


@dataclass
class _Bucket:
    tokens: float
    updated: float


class LocalRequestRate:
    """A token bucket per caller: `per_minute` requests a minute, bursts up to as many."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    async def take(self, caller: str, n: int = 1) -> float | None:
        now = self._clock()
        # Kept in order of last use (popped and put back at the end), so the buckets that
        # have waited longest, the likeliest to have refilled, are at the front.
        bucket = self._buckets.pop(caller, None)
        if bucket is None:
            bucket = _Bucket(float(self.per_minute), now)
            self._forget_refilled(now)
        self._buckets[caller] = bucket
        bucket.tokens = min(self.per_minute, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= n:
            bucket.tokens -= n
            return None
        return (n - bucket.tokens) / self._rate

    def _forget_refilled(self, now: float) -> None:
        """Drop buckets that have refilled (the same as no bucket) from the front: a few for
        each new caller, so many callers (addresses, without keys) cost no scans."""
        for _ in range(2):
            oldest = next(iter(self._buckets), None)
            if oldest is None:
                return
            bucket = self._buckets[oldest]
            if bucket.tokens + (now - bucket.updated) * self._rate < self.per_minute:
                return
            del self._buckets[oldest]

    async def aclose(self) -> None:
        pass


class LocalStreamSlots:
    """At most `per_caller` open streams per caller."""

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller
        self._open: dict[str, set[str]] = {}

    async def acquire(self, caller: str) -> str | None:
        held = self._open.setdefault(caller, set())
        if len(held) >= self.per_caller:
            return None
        slot = uuid.uuid4().hex
        held.add(slot)
        return slot

    async def release(self, caller: str, slot: str) -> None:
        held = self._open.get(caller)
        if held is not None:
            held.discard(slot)
            if not held:
                del self._open[caller]

    def open(self, caller: str) -> int:
        return len(self._open.get(caller, ()))

    async def aclose(self) -> None:
        pass
