"""Threads in Redis, so every worker and replica sees the same conversations."""

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
from redis.asyncio import Redis
from redis.exceptions import WatchError

from chainserve.chains.history.store import ThreadInfo
from chainserve.chains.redis_connect import redis_client

PREFIX = "chainserve:thread:"
BY_OWNER = "chainserve:threads-of:"
"""A sorted set per owner (thread ids by creation time), for listing one owner's threads."""


class RedisThreadStore:
    """A hash per thread for its metadata and a list for its messages."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        self._redis: Redis = redis_client(url, timeout=timeout)

    @staticmethod
    def _keys(thread_id: str) -> tuple[str, str]:
        return f"{PREFIX}{thread_id}", f"{PREFIX}{thread_id}:messages"

    async def create(
        self, metadata: dict[str, Any] | None = None, owner: str | None = None
    ) -> ThreadInfo:
        info = ThreadInfo(uuid.uuid4().hex, time.time(), dict(metadata or {}), owner)
        meta_key, _ = self._keys(info.thread_id)
        fields: dict[str | bytes, str] = {
            "created_at": repr(info.created_at),
            "metadata": json.dumps(info.metadata),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            # No `owner` field at all for an unowned thread, as in hashes from before owners.
            if owner is not None:
                fields["owner"] = owner
            pipe.hset(meta_key, mapping=fields)  # type: ignore[arg-type]
            if owner is not None:
                pipe.zadd(BY_OWNER + owner, {info.thread_id: info.created_at})
            await pipe.execute()
        return info

    async def get(self, thread_id: str) -> ThreadInfo | None:
        meta_key, _ = self._keys(thread_id)
        fields: dict[Any, Any] = await self._redis.hgetall(meta_key)
        return _info(thread_id, fields) if fields else None

    async def list_threads(
        self, owner: str | None, *, everyone: bool = False, limit: int = 100
    ) -> list[ThreadInfo]:
        if owner is not None and not everyone:
            ids: list[Any] = await self._redis.zrevrange(BY_OWNER + owner, 0, limit - 1)
        else:  # every thread, or the unowned ones, which no index lists: a scan
            ids = [
                key.removeprefix(PREFIX)
                async for key in self._redis.scan_iter(match=PREFIX + "*", count=500)
                if not key.endswith(":messages")
            ]
        found = []
        for thread_id in ids:
            info = await self.get(thread_id)
            if info is not None and (everyone or info.owner == owner):
                found.append(info)
        found.sort(key=lambda info: info.created_at, reverse=True)
        return found[:limit]

    async def messages(self, thread_id: str) -> list[BaseMessage]:
        _, list_key = self._keys(thread_id)
        raw: list[Any] = await self._redis.lrange(list_key, 0, -1)
        return messages_from_dict([json.loads(item) for item in raw])

    async def append(self, thread_id: str, messages: Sequence[BaseMessage]) -> None:
        if not messages:
            return
        meta_key, list_key = self._keys(thread_id)
        # Append only while the thread still exists: a turn that ends after DELETE is dropped
        # instead of resurrecting half a thread.
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(meta_key)
                if not await pipe.exists(meta_key):
                    return
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.rpush(list_key, *(json.dumps(message_to_dict(m)) for m in messages))
                await pipe.execute()
            except WatchError:
                return  # the thread was deleted meanwhile

    async def delete(self, thread_id: str) -> bool:
        owner = await self._redis.hget(self._keys(thread_id)[0], "owner")
        deleted: int = await self._redis.delete(*self._keys(thread_id))
        if owner is not None:
            await self._redis.zrem(BY_OWNER + str(owner), thread_id)
        return deleted > 0

    async def aclose(self) -> None:
        await self._redis.aclose()


def _info(thread_id: str, fields: dict[Any, Any]) -> ThreadInfo:
    created_at, metadata = float(fields["created_at"]), json.loads(fields["metadata"])
    return ThreadInfo(thread_id, created_at, metadata, fields.get("owner"))
