"""Run leases in Redis: the worker running a run renews its lease; a run whose lease ran out
lost its worker, and whoever notices first records it as failed.

Writing a run's terminal event is one Lua script that checks the run is still running (and,
for a reaper, that its lease is gone), so the owner finishing and a reaper noticing at the
same moment never both write a terminal event.
"""

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chainserve.api.errors.typed import ChainError

logger = logging.getLogger("chainserve.runs")

# KEYS: events, seq, output, record, lease. ARGV: the terminal event as a stream entry's
# value (`redis_batches.pack`), max entries, ttl, new record, '1' to write only if the lease
# is gone, the seq it must get ('': the next one). Returns -1 (no such run), 0 (not written), 1.
FINISH = """
local raw = redis.call('GET', KEYS[4])
if not raw then return -1 end
if cjson.decode(raw)['status'] ~= 'running' then return 0 end
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
local count = redis.call('GET', KEYS[2]) or '0'
if ARGV[6] ~= '' and count ~= ARGV[6] then return 0 end
local next = tonumber(count) + 1
redis.call('SET', KEYS[4], ARGV[4], 'EX', ARGV[3])
redis.call('SET', KEYS[2], next, 'EX', ARGV[3])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '0-' .. next, 'b', ARGV[1])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
redis.call('DEL', KEYS[5])
return 1
"""


WORKER_LOST = ChainError(
    503,
    "worker_lost",
    "The worker running this run stopped before it finished; start it again.",
    True,
)
"""The error a run gets when the worker running it stopped renewing its lease."""


def worker_lost(run_id: str) -> dict[str, object]:
    return WORKER_LOST.payload(run_id)


class RunLeases:
    """Renews, every third of `lease` seconds, the lease of every run this process runs."""

    def __init__(self, redis: Redis, lease: float) -> None:
        self.lease = lease
        self._redis = redis
        self._owned: dict[str, str] = {}
        """run id -> its lease key, for every run this process is running."""
        self._renewer: asyncio.Task[None] | None = None

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease * 1000))

    def own(self, run_id: str, key: str) -> None:
        """Renew from now on the lease `key` (already set) of a run this process runs."""
        self._owned[run_id] = key
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew(), name="run-leases")

    def drop(self, run_id: str) -> None:
        self._owned.pop(run_id, None)

    async def _renew(self) -> None:
        while self._owned:
            await asyncio.sleep(self.lease / 3)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in list(self._owned.values()):
                        pipe.set(key, "1", px=self.lease_ms)
                    await pipe.execute()
            except (RedisError, OSError):
                logger.warning("could not renew run leases", exc_info=True)

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
