"""The thread store contract, and the LangChain message-history view of one thread."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage


@dataclass(frozen=True)
class ThreadInfo:
    thread_id: str
    created_at: float
    """Seconds since the epoch."""
    metadata: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    """Whoever created it, as the caller named itself (an opaque string); None: unowned
    (made before threads had owners, or by a server with a single owner)."""


class ThreadStore(Protocol):
    """Durable conversation threads. Every method is async: stores may be remote (Redis)."""

    async def create(
        self, metadata: dict[str, Any] | None = None, owner: str | None = None
    ) -> ThreadInfo: ...

    async def get(self, thread_id: str) -> ThreadInfo | None: ...

    async def list_threads(
        self, owner: str | None, *, everyone: bool = False, limit: int = 100
    ) -> list[ThreadInfo]:
        """The newest `limit` threads of `owner` (with `everyone`, of every owner), newest
        first."""
        ...

    async def messages(self, thread_id: str) -> list[BaseMessage]: ...

    async def append(self, thread_id: str, messages: Sequence[BaseMessage]) -> None: ...

    async def delete(self, thread_id: str) -> bool: ...

    async def aclose(self) -> None: ...


class ThreadHistory(BaseChatMessageHistory):
    """One thread as a LangChain `BaseChatMessageHistory`, read and extended by `ThreadMemory`.

    Async only on purpose: the server never runs chains synchronously, and a sync call
    would have to block an event loop on network or disk.
    """

    def __init__(self, store: ThreadStore, thread_id: str) -> None:
        self.store = store
        self.thread_id = thread_id

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        raise NotImplementedError("thread history is async: use aget_messages()")

    async def aget_messages(self) -> list[BaseMessage]:
        return await self.store.messages(self.thread_id)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        await self.store.append(self.thread_id, messages)

    def clear(self) -> None:
        raise NotImplementedError("thread history is async: use aclear()")

    async def aclear(self) -> None:
        raise NotImplementedError("delete the thread instead")
