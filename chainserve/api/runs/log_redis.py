"""The run log in Redis, so any worker or replica can join, resume or cancel any run.

Per run: a JSON record, an output string (APPENDed as tokens arrive), a sequence counter,
and a stream of events whose entry ids are `0-<seq+1>`, so "events after N" is one XREAD.
Every key expires `ttl` seconds after the run last wrote. A running run also has a lease its
worker renews (api/runs/lease_redis.py): reading a run whose lease ran out records it as failed.
"""

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from typing import Any

from redis.asyncio import Redis

from chainserve.api.runs.encoding import to_json
from chainserve.api.runs.lease_redis import FINISH, RunLeases, worker_lost
from chainserve.api.runs.log import RunEvent, RunGone, RunRecord
from chainserve.chains.redis_connect import blocking_slice, redis_client

logger = logging.getLogger("chainserve.runs")

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
    def __init__(
        self, url: str, *, ttl: float, max_events: int, timeout: float = 2.0, lease: float = 30.0
    ) -> None:
        self._redis: Redis = redis_client(url, timeout=timeout)
        self._block = blocking_slice(timeout)
        self._ttl = max(1, int(ttl))
        self._max_events = max_events
        self._append = self._redis.register_script(_APPEND)
        self._finish = self._redis.register_script(FINISH)
        self._leases = RunLeases(self._redis, lease)

    @staticmethod
    def _keys(run_id: str) -> list[str]:
        base = f"{PREFIX}{run_id}"
        return [f"{base}:events", f"{base}:seq", f"{base}:output", base, f"{base}:lease"]

    async def create(self, record: RunRecord, metadata: str) -> None:
        body = {k: v for k, v in asdict(record).items() if k not in ("output", "last_seq")}
        await self._leases.take(record.run_id, self._keys(record.run_id)[4])
        await self._redis.set(self._keys(record.run_id)[3], json.dumps(body), ex=self._ttl)
        await self.append(record.run_id, "metadata", metadata)

    async def append(self, run_id: str, event: str, data: str, output: str = "") -> int:
        args: list[str | int] = [event, data, output, self._max_events, self._ttl]
        seq: int = await self._append(keys=self._keys(run_id)[:4], args=args)
        return seq

    async def finish(self, run_id: str, changes: dict[str, Any], event: str, data: str) -> None:
        try:
            await self._write_end(run_id, changes, event, data, only_if_lost=False)
        finally:
            self._leases.drop(run_id)

    async def _write_end(
        self, run_id: str, changes: dict[str, Any], event: str, data: str, *, only_if_lost: bool
    ) -> bool:
        """Write the record's changes and the terminal event, if the run is still running."""
        raw = await self._redis.get(self._keys(run_id)[3])
        if raw is None:
            raise KeyError(run_id)
        body = json.dumps({**json.loads(raw), **changes})
        args: list[str | int] = [
            event,
            data,
            self._max_events,
            self._ttl,
            body,
            "1" if only_if_lost else "0",
        ]
        written: int = await self._finish(keys=self._keys(run_id), args=args)
        if written < 0:
            raise KeyError(run_id)
        return written == 1

    async def _reap(self, run_id: str) -> None:
        """The run's worker stopped renewing its lease: record the run as failed."""
        payload = worker_lost(run_id)
        changes = {"status": "error", "error": payload, "http_status": 503}
        with contextlib.suppress(KeyError):
            if await self._write_end(run_id, changes, "error", to_json(payload), only_if_lost=True):
                logger.warning("run %s lost its worker; recorded as failed", run_id)

    async def get(self, run_id: str) -> RunRecord | None:
        _, seq, output, record, lease = self._keys(run_id)
        values: Any = await self._redis.mget(record, seq, output, lease)
        raw, last, text, held = values
        if raw is None:
            return None
        fields = json.loads(raw)
        if fields.get("status") == "running" and held is None:
            await self._reap(run_id)
            return await self.get(run_id)
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
        await self._leases.aclose()
        await self._redis.aclose()
