"""The per-caller limit counts in Redis, shared by every worker and replica.

Both checks are one Lua script each, so they are atomic across processes, and both read Redis'
own clock, so hosts with drifting clocks still agree. A stream slot is a member of the caller's
sorted set scored by a lease expiry that this process renews while the slot is held: a worker
that dies holding slots frees them when their leases run out, instead of never.

If Redis cannot be reached the limits are not enforced (and a warning is logged): an outage of
the limit store should slow nobody's stream, and the run log, which shares that Redis, fails
loudly on its own.
"""

import asyncio
import contextlib
import logging
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("chainserve.limits")

PREFIX = "chainserve:limit:"
LEASE_SECONDS = 30.0
"""How long a slot outlives the last renewal of a process that stopped renewing (it died)."""

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local per_minute = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local rate = per_minute / 60
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or per_minute
local at = tonumber(bucket[2]) or now
tokens = math.min(per_minute, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= n then tokens = tokens - n else wait = (n - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], 61)
return tostring(wait)
"""

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
return 1
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""


class _Outage:
    """Logs a Redis outage once a minute, not once per request."""

    def __init__(self) -> None:
        self._logged_at = -60.0

    def report(self, what: str) -> None:
        now = time.monotonic()
        if now - self._logged_at >= 60:
            self._logged_at = now
            logger.warning("limits not enforced: Redis unreachable for %s", what, exc_info=True)


class RedisRequestRate:
    def __init__(self, redis: Redis, per_minute: int) -> None:
        self.per_minute = per_minute
        self._redis = redis
        self._take = redis.register_script(_TAKE)
        self._outage = _Outage()

    async def take(self, caller: str, n: int = 1) -> float | None:
        try:
            key = f"{PREFIX}rate:{caller}"
            wait = float(await self._take(keys=[key], args=[self.per_minute, n]))
        except (RedisError, OSError):
            self._outage.report("the request rate")
            return None
        return wait or None

    async def aclose(self) -> None:
        await self._redis.aclose()


class RedisStreamSlots:
    def __init__(self, redis: Redis, per_caller: int, lease: float = LEASE_SECONDS) -> None:
        self.per_caller = per_caller
        self._redis = redis
        self._lease = lease
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._held: dict[str, str] = {}
        """slot id -> caller, for every slot this process holds (renewed until released)."""
        self._renewer: asyncio.Task[None] | None = None
        self._outage = _Outage()

    @staticmethod
    def _key(caller: str) -> str:
        return f"{PREFIX}streams:{caller}"

    async def acquire(self, caller: str) -> str | None:
        slot = uuid.uuid4().hex
        try:
            taken = await self._acquire(
                keys=[self._key(caller)], args=[self.per_caller, slot, self._lease]
            )
        except (RedisError, OSError):
            self._outage.report("open streams")
            return slot  # not counted anywhere; releasing it is a harmless no-op
        if not taken:
            return None
        self._held[slot] = caller
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_leases(), name="limit-slot-leases")
        return slot

    async def release(self, caller: str, slot: str) -> None:
        self._held.pop(slot, None)
        try:
            await self._redis.zrem(self._key(caller), slot)
        except (RedisError, OSError):
            self._outage.report("releasing a stream slot")  # its lease frees it soon

    async def _renew_leases(self) -> None:
        while self._held:
            await asyncio.sleep(self._lease / 3)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for slot, caller in list(self._held.items()):
                        await self._renew(
                            keys=[self._key(caller)], args=[slot, self._lease], client=pipe
                        )
                    await pipe.execute()
            except (RedisError, OSError):
                self._outage.report("renewing stream slots")

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        await self._redis.aclose()
