"""The run log in Redis, so any worker or replica can join, resume or cancel any run.

Per run: a JSON record, an output string (APPENDed as tokens arrive), a sequence counter,
and a stream of events whose entry ids are `0-<seq+1>`, so "events after N" is one XREAD.
Every key expires `ttl` seconds after the run last wrote.
"""

import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from typing import Any

from redis.asyncio import Redis

from api.run_log import RunEvent, RunGone, RunRecord
from chains.redis_connect import blocking_slice, redis_client

PREFIX = "chainserve:run:"
CANCEL_CHANNEL = "chainserve:run-cancel"

# One round trip per event: number it, store it (bounded), grow the output, refresh TTLs.
_APPEND = """
local seq = redis.call('INCR', KEYS[2]) - 1
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[4], '0-' .. (seq + 1), 'e', ARGV[1], 'd', ARGV[2])
if ARGV[3] ~= '' then redis.call('APPEND', KEYS[3], ARGV[3]) end
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
return seq
"""


class RedisRunLog:
    def __init__(self, url: str, *, ttl: float, max_events: int, timeout: float = 2.0) -> None:
        self._redis: Redis = redis_client(url, timeout=timeout)
        self._block = blocking_slice(timeout)
        self._ttl = max(1, int(ttl))
        self._max_events = max_events
        self._append = self._redis.register_script(_APPEND)

    @staticmethod
    def _keys(run_id: str) -> list[str]:
        base = f"{PREFIX}{run_id}"
        return [f"{base}:events", f"{base}:seq", f"{base}:output", base]

    async def create(self, record: RunRecord, metadata: str) -> None:
        body = {k: v for k, v in asdict(record).items() if k not in ("output", "last_seq")}
        await self._redis.set(self._keys(record.run_id)[3], json.dumps(body), ex=self._ttl)
        await self.append(record.run_id, "metadata", metadata)

    async def append(self, run_id: str, event: str, data: str, output: str = "") -> int:
        args: list[str | int] = [event, data, output, self._max_events, self._ttl]
        seq: int = await self._append(keys=self._keys(run_id), args=args)
        return seq

    async def finish(self, run_id: str, changes: dict[str, Any], event: str, data: str) -> None:
        key = self._keys(run_id)[3]
        raw = await self._redis.get(key)
        if raw is None:
            raise KeyError(run_id)
        await self._redis.set(key, json.dumps({**json.loads(raw), **changes}), ex=self._ttl)
        await self.append(run_id, event, data)

    async def get(self, run_id: str) -> RunRecord | None:
        _, seq, output, record = self._keys(run_id)
        values: Any = await self._redis.mget(record, seq, output)
        raw, last, text = values
        if raw is None:
            return None
        fields = json.loads(raw)
        return replace(
            RunRecord(**fields), output=text or "", last_seq=int(last) - 1 if last else -1
        )

    async def read(self, run_id: str, after: int, wait: float) -> list[RunEvent]:
        events_key = self._keys(run_id)[0]
        if not await self._redis.exists(self._keys(run_id)[3]):
            raise KeyError(run_id)
        start = f"0-{after + 1}"
        # redis-py's return types depend on the protocol version; we use RESP2 shapes.
        entries: Any
        if wait > 0:
            entries = await self._wait(events_key, start, wait)
        else:
            entries = await self._redis.xrange(events_key, min=f"({start}")
        events = [RunEvent(int(eid.split("-")[1]) - 1, f["e"], f["d"]) for eid, f in entries]
        if events and events[0].seq > after + 1:
            raise RunGone(run_id)
        return events

    async def _wait(self, key: str, start: str, wait: float) -> Any:
        """XREAD BLOCK for up to `wait`, in slices shorter than the client's socket timeout
        (a single long block would time the socket out during a model's silence)."""
        deadline = time.monotonic() + wait
        while True:
            block = min(deadline - time.monotonic(), self._block)
            found: Any = await self._redis.xread({key: start}, block=max(1, int(block * 1000)))
            if found:
                return found[0][1]
            if time.monotonic() >= deadline:
                return []

    async def publish_cancel(self, run_id: str) -> None:
        await self._redis.publish(CANCEL_CHANNEL, run_id)

    async def cancellations(self) -> AsyncIterator[str]:
        async with self._redis.pubsub() as pubsub:
            await pubsub.subscribe(CANCEL_CHANNEL)
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield str(message["data"])

    async def aclose(self) -> None:
        await self._redis.aclose()
