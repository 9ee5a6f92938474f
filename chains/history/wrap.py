"""Give a messages-in chain a memory: load a thread's history, trim it, save the new turn."""

import warnings
from collections.abc import Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, trim_messages
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import (
    ConfigurableFieldSpec,
    Runnable,
    RunnableLambda,
    RunnablePassthrough,
)
from langchain_core.runnables.history import RunnableWithMessageHistory

from chains.history.store import ThreadHistory, ThreadStore
from chains.messages import coerce_message

THREAD_KEY = "thread_id"
HISTORY_KEY = "history"
"""The prompt variable history arrives in: chains with memory put a placeholder for it."""


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


class _Forgetful(BaseChatMessageHistory):
    """The history of a run with no thread: starts empty, remembers nothing."""

    messages: list[BaseMessage] = []  # noqa: RUF012 - never mutated

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        return None

    def clear(self) -> None:
        return None


def _session_factory(store: ThreadStore | None) -> Any:
    def session(thread_id: str) -> BaseChatMessageHistory:
        if not thread_id or store is None:
            return _Forgetful()
        return ThreadHistory(store, thread_id)

    return session


def _coerce_messages(value: dict[str, Any]) -> dict[str, Any]:
    # The history wrapper saves `messages` as given, so wire dicts become messages first.
    return {**value, "messages": [coerce_message(m) for m in value["messages"]]}


def with_thread_history(
    runnable: Runnable[Any, Any], store: ThreadStore | None, token_budget: int
) -> Runnable[Any, Any]:
    """Wrap `runnable` (input `{"messages": [...]}`) so `configurable.thread_id` gives it memory.

    The new messages and the reply are appended when the run completes; a failed or
    cancelled run leaves the thread as it was.
    """
    trimmed = RunnablePassthrough.assign(
        **{HISTORY_KEY: lambda x: trim_history(token_budget, x.get(HISTORY_KEY, []))}
    ).with_config(run_name="trim_history")
    with warnings.catch_warnings():
        # Deprecated in favour of LangGraph persistence, whose Redis saver needs Redis Stack
        # modules; this machinery is the one that works on plain SQLite and Redis.
        warnings.filterwarnings("ignore", message="RunnableWithMessageHistory is deprecated")
        wrapped = RunnableWithMessageHistory(
            trimmed | runnable,
            _session_factory(store),
            input_messages_key="messages",
            history_messages_key=HISTORY_KEY,
            history_factory_config=[
                ConfigurableFieldSpec(
                    id=THREAD_KEY,
                    annotation=str,
                    name="Thread",
                    description="Conversation thread to load and extend (see POST /threads).",
                    default="",
                    is_shared=True,
                )
            ],
        )
    coerce = RunnableLambda(_coerce_messages).with_config(run_name="coerce_messages")
    return (coerce | wrapped).with_config(configurable={THREAD_KEY: ""})
