"""The run log in Redis, so any worker or replica can join, resume or cancel any run.

Per run: a JSON record, an output string (APPENDed as tokens arrive), a sequence counter,
and a stream of events whose entry ids are `0-<seq+1>`, so "events after N" is one XREAD.
Every key expires `ttl` seconds after the run last wrote.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from typing import Any

from redis.asyncio import Redis

from api.run_log import RunEvent, RunGone, RunRecord

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


SOCKET_TIMEOUT = 5.0
"""Seconds a command may wait for Redis' answer (redis-py's own default, made explicit)."""


class RedisRunLog:
    def __init__(
        self, url: str, *, ttl: float, max_events: int, socket_timeout: float = SOCKET_TIMEOUT
    ) -> None:
        self._redis: Redis = Redis.from_url(
            url, decode_responses=True, socket_timeout=socket_timeout
        )
        # A blocking XREAD holds the socket silent for as long as it blocks, and the socket
        # timeout does not know it asked for that: one longer than the timeout is cut off as a
        # dead connection. So a long wait (a keepalive interval, a model thinking before its
        # first token) is a loop of blocks well inside the timeout.
        self._block_slice = max(0.05, socket_timeout / 2)
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
            entries = await self._block_for_events(events_key, start, wait)
        else:
            entries = await self._redis.xrange(events_key, min=f"({start}")
        events = [RunEvent(int(eid.split("-")[1]) - 1, f["e"], f["d"]) for eid, f in entries]
        if events and events[0].seq > after + 1:
            raise RunGone(run_id)
        return events

    async def _block_for_events(self, events_key: str, start: str, wait: float) -> Any:
        """XREAD after `start` for up to `wait` seconds, in blocks shorter than the socket
        timeout; the entries found, or [] when the wait ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            block = min(self._block_slice, deadline - loop.time())
            found: Any = await self._redis.xread(
                {events_key: start}, block=max(1, int(block * 1000))
            )
            if found:
                return found[0][1]
            if loop.time() >= deadline - 0.001:
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
