"""The counts behind the per-caller limits, kept in this process (one worker, or one each).

`api/limit_counts_redis.py` keeps the same counts in Redis, shared by every worker and replica.
"""

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class RequestRate(Protocol):
    per_minute: int

    async def take(self, caller: str) -> float | None:
        """None if `caller` may go ahead (and it is counted), else seconds until it may."""

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

    async def take(self, caller: str) -> float | None:
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) > 10_000:
                self._forget_full(now)
            bucket = self._buckets[caller] = _Bucket(float(self.per_minute), now)
        bucket.tokens = min(self.per_minute, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self._rate

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: drop those.
        for caller, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self._rate >= self.per_minute:
                del self._buckets[caller]

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
