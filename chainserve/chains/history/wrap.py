"""Give a messages-in chain a memory: load a thread's history, trim it, save the new turn."""

from functools import partial
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from chainserve.chains.agents import is_agent, with_turns
from chainserve.chains.history.agent_turns import AgentTurns
from chainserve.chains.history.memory import HISTORY_KEY, HistoryFactory, ThreadMemory
from chainserve.chains.history.store import ThreadHistory, ThreadStore
from chainserve.chains.thread_key import THREAD_KEY
from chainserve.chains.tokens.count import count_message_tokens

__all__ = ["HISTORY_KEY", "THREAD_KEY", "trim_history", "with_thread_history"]


def trim_history(token_budget: int, history: list[BaseMessage], model: str) -> list[BaseMessage]:
    """Keep the most recent turns that fit the budget, starting on a user message (and a
    leading system message, if the thread has one).

    Counted with `model`'s tokenizer, as the input limit counts (chains/tokens/count.py), so a
    server's input limit can reserve the budget for history and be sure it holds: a count by
    characters undercounts scripts with many tokens per character, by 16 times for some.
    Walks back from the newest message and stops at the budget, so a long thread costs no
    more than a short one.
    """
    system = history[:1] if history and history[0].type == "system" else []
    left = token_budget - sum(count_message_tokens(m, model) for m in system)
    if left < 0:
        return []
    kept: list[BaseMessage] = []
    for message in reversed(history[len(system) :]):
        left -= count_message_tokens(message, model)
        if left < 0:
            break
        kept.append(message)
    kept.reverse()
    start = next((i for i, m in enumerate(kept) if m.type == "human"), len(kept))
    return system + kept[start:]


def thread_histories(store: ThreadStore | None) -> HistoryFactory:
    """A thread id's history in `store`; None for no thread (or no store): nothing is kept."""

    def history(thread_id: str) -> BaseChatMessageHistory | None:
        return ThreadHistory(store, thread_id) if thread_id and store is not None else None

    return history


def with_thread_history(
    runnable: Runnable[Any, Any], store: ThreadStore | None, token_budget: int, default_model: str
) -> Runnable[Any, Any]:
    """Wrap `runnable` (input `{"messages": [...]}`) so `configurable.thread_id` gives it memory.

    The new messages and the reply are appended when the run completes; a failed or
    cancelled run leaves the thread as it was. An agent (`chains/agents.py`) keeps its own:
    its whole turn, tool calls and results included, goes into the thread.
    """
    if is_agent(runnable):
        turns = AgentTurns(thread_histories(store), partial(trim_history, token_budget),
                           default_model)  # fmt: skip
        return with_turns(runnable, turns)
    threaded = ThreadMemory(
        bound=runnable,
        history=thread_histories(store),
        trim=partial(trim_history, token_budget),
        default_model=default_model,
    )
    return threaded.with_config(configurable={THREAD_KEY: ""})
