"""Threads in Redis, so every worker and replica sees the same conversations."""

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
from redis.asyncio import Redis
from redis.exceptions import WatchError

from chains.history.store import ThreadInfo

PREFIX = "chainserve:thread:"


class RedisThreadStore:
    """A hash per thread for its metadata and a list for its messages."""

    def __init__(self, url: str) -> None:
        self._redis: Redis = Redis.from_url(url, decode_responses=True)

    @staticmethod
    def _keys(thread_id: str) -> tuple[str, str]:
        return f"{PREFIX}{thread_id}", f"{PREFIX}{thread_id}:messages"

    async def create(self, metadata: dict[str, Any] | None = None) -> ThreadInfo:
        info = ThreadInfo(uuid.uuid4().hex, time.time(), dict(metadata or {}))
        meta_key, _ = self._keys(info.thread_id)
        await self._redis.hset(
            meta_key,
            mapping={"created_at": repr(info.created_at), "metadata": json.dumps(info.metadata)},
        )
        return info

    async def get(self, thread_id: str) -> ThreadInfo | None:
        meta_key, _ = self._keys(thread_id)
        fields: dict[Any, Any] = await self._redis.hgetall(meta_key)
        if not fields:
            return None
        return ThreadInfo(thread_id, float(fields["created_at"]), json.loads(fields["metadata"]))

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
        deleted: int = await self._redis.delete(*self._keys(thread_id))
        return deleted > 0

    async def aclose(self) -> None:
        await self._redis.aclose()
