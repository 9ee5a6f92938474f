"""The run log in Redis, so any worker or replica can join, resume or cancel any run.

Per run: a JSON record, an output string, an event count, and a stream of events whose entries
hold one or more consecutive events, the entry id being the last one's `0-<seq+1>`, so "events
after N" is one XREAD. Every key expires `ttl` seconds (give or take a quarter) after the run
last wrote. A running run also has a lease its worker renews (api/runs/lease_redis.py):
reading a run whose lease ran out records it as failed.

The worker running a run keeps it in memory as well (`MemoryRunLog`) and serves its own
followers from there, exactly as without Redis; its new events reach Redis in batches, a few
milliseconds apart (`redis_batches.py`), and a run's terminal event only after all of them.
Other workers read Redis. A worker that dies loses at most the events of its last
`flush_interval`, at the end of its runs; ids stay contiguous, since the reaper numbers the
`worker_lost` error after what Redis has.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from chainserve.api.runs.encoding import to_json
from chainserve.api.runs.lease_redis import FINISH, RunLeases, worker_lost
from chainserve.api.runs.log import RunEvent, RunGone, RunRecord
from chainserve.api.runs.log_memory import MemoryRunLog
from chainserve.api.runs.redis_batches import RunBatches, pack, unpack
from chainserve.chains.redis_connect import blocking_slice, redis_client

logger = logging.getLogger("chainserve.runs")

PREFIX = "chainserve:run:"
LATEST_PREFIX = "chainserve:run-latest:"
CANCEL_CHANNEL = "chainserve:run-cancel"
DEFAULT_FLUSH_INTERVAL = 0.005

LOCAL_GRACE_SECONDS = 30.0
"""How long a finished run stays in its worker's memory (its followers read the tail there)."""
_LOCAL_MAX_RUNS = 1_000_000
"""Runs leave the worker's memory when they finish (plus the grace), never for a newer one."""


# KEYS: events, seq, output, record, lease. ARGV: record, the metadata entry, ttl, lease ms.
_CREATE = """
redis.call('SET', KEYS[5], '1', 'PX', ARGV[4])
redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[3])
redis.call('XADD', KEYS[1], '0-1', 'b', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
redis.call('SET', KEYS[3], '', 'EX', ARGV[3])
"""


class RedisRunLog:
    def __init__(
        self,
        url: str,
        *,
        ttl: float,
        max_events: int,
        timeout: float = 2.0,
        lease: float = 30.0,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    ) -> None:
        self._redis: Redis = redis_client(url, timeout=timeout)
        self._block = blocking_slice(timeout)
        self._ttl = max(1, int(ttl))
        self._max_events = max_events
        self._finish = self._redis.register_script(FINISH)
        self._create = self._redis.register_script(_CREATE)
        self._leases = RunLeases(self._redis, lease)
        self._local = MemoryRunLog(ttl=ttl, max_events=max_events, max_runs=_LOCAL_MAX_RUNS)
        self._batches = RunBatches(
            self._redis,
            prefix=PREFIX,
            interval=flush_interval,
            ttl=self._ttl,
            max_entries=max_events,
        )

    @staticmethod
    def _keys(run_id: str) -> list[str]:
        base = f"{PREFIX}{run_id}"
        return [f"{base}:events", f"{base}:seq", f"{base}:output", base, f"{base}:lease"]

    async def create(self, record: RunRecord, metadata: str) -> None:
        """One script call: the lease, the record, the `metadata` event; then the run is kept
        here too, where this worker's followers read it."""
        keys = self._keys(record.run_id)
        body = {k: v for k, v in asdict(record).items() if k not in ("output", "last_seq")}
        args: list[str | int] = [
            json.dumps(body),
            pack([("metadata", metadata)]),
            self._ttl,
            self._leases.lease_ms,
        ]
        await self._create(keys=keys, args=args)
        self._leases.own(record.run_id, keys[4])
        self._batches.started(record.run_id)
        await self._local.create(record, metadata)

    async def append(self, run_id: str, event: str, data: str, output: str = "") -> int:
        seq = await self._local.append(run_id, event, data, output)
        self._batches.add(run_id, seq, event, data, output)
        return seq

    async def finish(self, run_id: str, changes: dict[str, Any], event: str, data: str) -> None:
        """The terminal event reaches this worker's followers at once, and Redis after every
        event before it. A Redis failure here is logged, not raised: the run did end, and
        once its lease runs out other workers record it as lost."""
        if not self._local.holds(run_id):  # not run here (or long expired): Redis only
            await self._write_end(run_id, changes, event, data, only_if_lost=False)
            return
        await self._local.finish(run_id, changes, event, data)
        record = await self._local.get(run_id)
        try:
            # Once the run has ended here, Redis must hear of it even if this task is
            # cancelled now (a client hanging up right after reading the end).
            with anyio.CancelScope(shield=True):
                await self._batches.flush()
                if record is not None and not await self._write_end(
                    run_id, changes, event, data, only_if_lost=False, record=record
                ):
                    logger.warning("run %s: its end was not recorded in Redis", run_id)
        except (RedisError, OSError, KeyError) as exc:
            logger.warning("run %s: its end was not recorded in Redis (%s)", run_id, exc)
        finally:
            self._leases.drop(run_id)
            self._batches.forget(run_id)
            loop = asyncio.get_running_loop()
            loop.call_later(LOCAL_GRACE_SECONDS, self._local.forget, run_id)

    async def _write_end(
        self,
        run_id: str,
        changes: dict[str, Any],
        event: str,
        data: str,
        *,
        only_if_lost: bool,
        record: RunRecord | None = None,
    ) -> bool:
        """Write the record's changes and the terminal event, if the run is still running:
        as event `record.last_seq` when this worker has the run, else as the next one."""
        if record is not None:
            fields = {k: v for k, v in asdict(record).items() if k not in ("output", "last_seq")}
            body, seq = json.dumps(fields), str(record.last_seq)
        else:
            raw = await self._redis.get(self._keys(run_id)[3])
            if raw is None:
                raise KeyError(run_id)
            body, seq = json.dumps({**json.loads(raw), **changes}), ""
        args: list[str | int] = [
            pack([(event, data)]),
            self._max_events,
            self._ttl,
            body,
            "1" if only_if_lost else "0",
            seq,
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
        if self._local.holds(run_id):
            return await self._local.get(run_id)
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
        if self._local.holds(run_id):
            return await self._local.read(run_id, after, wait)
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
        events = [
            RunEvent(seq, event, data)
            for entry_id, fields in entries
            for seq, event, data in unpack(entry_id, fields["b"])
            if seq > after
        ]
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

    async def remember_latest(self, key: str, run_id: str) -> None:
        # In Redis only, never in this worker's memory: the chat's page may come back to
        # any worker.
        await self._redis.set(f"{LATEST_PREFIX}{key}", run_id, ex=self._ttl)

    async def latest(self, key: str) -> str | None:
        run_id: Any = await self._redis.get(f"{LATEST_PREFIX}{key}")
        return None if run_id is None else str(run_id)

    async def publish_cancel(self, run_id: str) -> None:
        await self._redis.publish(CANCEL_CHANNEL, run_id)

    async def cancellations(self) -> AsyncIterator[str]:
        async with self._redis.pubsub() as pubsub:
            await pubsub.subscribe(CANCEL_CHANNEL)
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield str(message["data"])

    async def aclose(self) -> None:
        await self._batches.aclose()
        await self._leases.aclose()
        await self._redis.aclose()
