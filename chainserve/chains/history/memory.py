"""`ThreadMemory`: a chat chain with a thread's history in, and the new turn saved after.

It does what `RunnableWithMessageHistory` does with LangChain's `BaseChatMessageHistory`
(load, put the history in the prompt's `history` variable, append the turn on success), minus
the per-token cost: that class attaches a listener tracer which receives every streamed
token's callback, about 200 µs of CPU per chunk in our profiles (docs/performance.md).
RunnableWithMessageHistory is also deprecated in langchain-core.
"""

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.utils import ConfigurableFieldSpec, get_unique_config_specs
from pydantic import ConfigDict

from chainserve.chains.messages import coerce_message
from chainserve.chains.models.factory import MODEL_KEY
from chainserve.chains.models.streaming import traced_stream
from chainserve.chains.thread_key import THREAD_KEY, THREAD_SPEC

HISTORY_KEY = "history"
"""The prompt variable history arrives in: chains with memory put a placeholder for it."""

HistoryFactory = Callable[[str], BaseChatMessageHistory | None]
Trim = Callable[[list[BaseMessage], str], list[BaseMessage]]
"""Cuts a thread's history to what a run may send the model named by its second argument."""


class ThreadMemory(RunnableSerializable[dict[str, Any], str]):
    """Wraps a chain taking `{"messages", "history"}`; `configurable.thread_id` picks the thread."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    bound: Runnable[dict[str, Any], str]
    history: HistoryFactory
    """Returns the thread's history, or None when there is no thread (nothing is kept)."""
    trim: Trim
    default_model: str
    """The model a run uses unless its config picks another: whose tokenizer trims history."""

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return get_unique_config_specs([*self.bound.config_specs, THREAD_SPEC])

    def _thread(self, config: RunnableConfig) -> BaseChatMessageHistory | None:
        return self.history(str(config.get("configurable", {}).get(THREAD_KEY) or ""))

    async def _prepare(
        self, input: dict[str, Any], thread: BaseChatMessageHistory | None, model: str
    ) -> tuple[dict[str, Any], list[BaseMessage]]:
        new = [coerce_message(m) for m in input["messages"]]
        past = self.trim(await thread.aget_messages(), model) if thread is not None else []
        return {**input, "messages": new, HISTORY_KEY: past}, new

    async def _turn(self, input: dict[str, Any], config: RunnableConfig) -> AsyncIterator[str]:
        thread = self._thread(config)
        model = str(config.get("configurable", {}).get(MODEL_KEY) or self.default_model)
        chain_input, new = await self._prepare(input, thread, model)
        answer = ""
        async for text in self.bound.astream(chain_input, config):
            answer += text
            yield text
        if thread is not None:  # only a completed turn is remembered
            await thread.aadd_messages([*new, AIMessage(content=answer)])

    async def astream(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        async for text in traced_stream(self, input, config, partial(self._turn, input)):
            yield text

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> str:
        return "".join([text async for text in self.astream(input, config)])

    def invoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> str:
        raise NotImplementedError("chains with thread memory run async (ainvoke/astream)")
