"""An agent's conversation threads in chainserve's own thread store, the one source of truth
for every chain's threads (SQLite, Redis or PostgreSQL, as configured).

A turn loads the thread (trimmed to the history budget, as for chat chains), runs the agent
on the history plus the new messages, and appends the whole turn when it completes: the
user's messages, each model turn (tool calls included), each tool result and the answer, so
the next turn's model sees what the tools found. A failed or cancelled turn leaves the thread
as it was.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig

from chainserve.chains.history.memory import HistoryFactory, Trim
from chainserve.chains.models.factory import MODEL_KEY
from chainserve.chains.thread_key import THREAD_KEY


@dataclass(frozen=True)
class AgentTurns:
    """Loads and extends an agent's thread; `chains/agents.py`'s `TurnStore`."""

    history: HistoryFactory
    trim: Trim
    default_model: str

    async def load(self, config: RunnableConfig) -> tuple[Any, list[BaseMessage]]:
        """The run's thread (None: no thread asked for) and its trimmed history."""
        configurable = config.get("configurable") or {}
        thread = self.history(str(configurable.get(THREAD_KEY) or ""))
        if thread is None:
            return None, []
        model = str(configurable.get(MODEL_KEY) or self.default_model)
        return thread, self.trim(await thread.aget_messages(), model)

    async def save(self, thread: Any, messages: Sequence[BaseMessage]) -> None:
        if isinstance(thread, BaseChatMessageHistory) and messages:
            await thread.aadd_messages(messages)
