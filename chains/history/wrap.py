"""Give a messages-in chain a memory: load a thread's history, trim it, save the new turn."""

from functools import partial
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, trim_messages
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import Runnable

from chains.history.memory import HISTORY_KEY, THREAD_KEY, ThreadMemory
from chains.history.store import ThreadHistory, ThreadStore

__all__ = ["HISTORY_KEY", "THREAD_KEY", "trim_history", "with_thread_history"]


def trim_history(token_budget: int, history: list[BaseMessage]) -> list[BaseMessage]:
    """Keep the most recent turns that fit the budget, starting on a user message.

    Counts approximately (about four characters a token) so it works offline and for any
    model; the budget is a cost and context guard, not an exact fit.
    """
    trimmed: list[BaseMessage] = trim_messages(
        history,
        max_tokens=token_budget,
        token_counter=count_tokens_approximately,
        strategy="last",
        start_on="human",
        include_system=True,
    )
    return trimmed


def with_thread_history(
    runnable: Runnable[Any, Any], store: ThreadStore | None, token_budget: int
) -> Runnable[Any, Any]:
    """Wrap `runnable` (input `{"messages": [...]}`) so `configurable.thread_id` gives it memory.

    The new messages and the reply are appended when the run completes; a failed or
    cancelled run leaves the thread as it was.
    """

    def history(thread_id: str) -> BaseChatMessageHistory | None:
        return ThreadHistory(store, thread_id) if thread_id and store is not None else None

    memory = ThreadMemory(bound=runnable, history=history, trim=partial(trim_history, token_budget))
    return memory.with_config(configurable={THREAD_KEY: ""})
