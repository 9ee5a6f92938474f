"""Threads of graphs that keep their own checkpoints, seen through chainserve's thread API.

Why: a user's graph compiled with a LangGraph checkpointer keeps its conversation there, not
in chainserve's thread store: LangGraph's state, interrupts and time travel depend on it, so
the server does not move it. The thread itself is still made by `POST /threads` and owned by
its key (a run names it as any thread). This view of the store is what the thread routes use:
`GET /threads/{id}` shows the graph's messages after the store's own, and
`DELETE /threads/{id}` deletes the graph's checkpoints of the thread too, so a deleted thread
leaves nothing behind. The chains themselves keep reading their own store.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from chainserve.chains.agents import own_checkpointed_graph
from chainserve.chains.history.store import ThreadInfo, ThreadStore
from chainserve.chains.thread_key import THREAD_KEY

logger = logging.getLogger(__name__)


def with_graph_checkpoints(
    store: ThreadStore, chains: Iterable[tuple[str, Runnable[Any, Any]]]
) -> ThreadStore:
    """`store`, seen with the checkpoints of the graphs among `chains` (name, chain) that keep
    their own; `store` itself when none does."""
    graphs: dict[int, Any] = {}  # one graph per checkpointer: a shared one is read once
    for name, chain in chains:
        graph = own_checkpointed_graph(chain)
        if graph is None or id(graph.checkpointer) in graphs:
            continue
        graphs[id(graph.checkpointer)] = graph
        if not _deletes_threads(graph.checkpointer):
            logger.warning(
                "chain %r: its checkpointer (%s) cannot delete a thread, so DELETE "
                "/threads/{id} leaves the thread's checkpoints in it",
                name,
                type(graph.checkpointer).__name__,
            )
    return CheckpointedThreads(store, tuple(graphs.values())) if graphs else store


def _deletes_threads(checkpointer: Any) -> bool:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    method = getattr(type(checkpointer), "adelete_thread", None)
    return method is not None and method is not BaseCheckpointSaver.adelete_thread


@dataclass(frozen=True)
class CheckpointedThreads:
    """A `ThreadStore` whose threads' messages and deletion include `graphs`' checkpoints."""

    store: ThreadStore
    graphs: tuple[Any, ...]

    async def create(
        self, metadata: dict[str, Any] | None = None, owner: str | None = None
    ) -> ThreadInfo:
        return await self.store.create(metadata, owner)

    async def get(self, thread_id: str) -> ThreadInfo | None:
        return await self.store.get(thread_id)

    async def list_threads(
        self, owner: str | None, *, everyone: bool = False, limit: int = 100
    ) -> list[ThreadInfo]:
        return await self.store.list_threads(owner, everyone=everyone, limit=limit)

    async def messages(self, thread_id: str) -> list[BaseMessage]:
        messages = list(await self.store.messages(thread_id))
        for graph in self.graphs:
            state = await graph.aget_state({"configurable": {THREAD_KEY: thread_id}})
            values = state.values if isinstance(state.values, dict) else {}
            kept = values.get("messages")
            if isinstance(kept, list):
                messages.extend(m for m in kept if isinstance(m, BaseMessage))
        return messages

    async def append(self, thread_id: str, messages: Sequence[BaseMessage]) -> None:
        await self.store.append(thread_id, messages)

    async def delete(self, thread_id: str) -> bool:
        for graph in self.graphs:
            if _deletes_threads(graph.checkpointer):
                await graph.checkpointer.adelete_thread(thread_id)
        return await self.store.delete(thread_id)

    async def aclose(self) -> None:
        await self.store.aclose()
