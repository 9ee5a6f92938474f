"""Runs seen through LangChain callbacks, for routes that run chains themselves (LangServe's).

Our own routes build a `Run` and drive the chain; LangServe drives it inside its handlers. A
callback handler added to the request's config sees each top-level run start, stream and end,
and keeps the same `Run` book-keeping for it, so its metrics and log line match ours.
"""

import asyncio
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from chainserve.api.errors.typed import classify
from chainserve.api.runs.run import Run, UsageCollector
from chainserve.chains import ModelInfo


class CallbackRuns(AsyncCallbackHandler):
    """One `Run` per top-level run in the config this handler is added to (a batch has several)."""

    run_inline = True

    def __init__(self, chain: str, model: ModelInfo, model_name: str, *, streamed: bool) -> None:
        self._chain, self._model, self._model_name = chain, model, model_name
        self._streamed = streamed
        self._parents: dict[UUID, UUID | None] = {}
        self._runs: dict[UUID, Run] = {}

    def _started(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        self._parents[run_id] = parent_run_id
        if parent_run_id is None:
            self._runs[run_id] = Run(
                chain=self._chain,
                model=self._model,
                model_name=self._model_name,
                streamed=self._streamed,
            )

    def _run_of(self, run_id: UUID) -> Run | None:
        seen = 0
        while (parent := self._parents.get(run_id)) is not None and seen < 1000:
            run_id, seen = parent, seen + 1
        return self._runs.get(run_id)

    def _ended(self, run_id: UUID, parent_run_id: UUID | None, error: BaseException | None) -> None:
        if parent_run_id is not None:
            return
        run = self._runs.pop(run_id, None)
        if not self._runs:
            self._parents.clear()
        if run is None:
            return
        if error is None:
            run.finish("done")
        elif isinstance(error, asyncio.CancelledError):
            run.finish("cancelled")
        else:
            run.finish("error", classify(error).code)

    def _stats(self, run_id: UUID) -> UsageCollector | None:
        run = self._run_of(run_id)
        return None if run is None else run.stats

    async def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._started(run_id, parent_run_id)

    async def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._started(run_id, parent_run_id)

    async def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._parents[run_id] = parent_run_id  # a retriever is never a served chain's top run

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._started(run_id, parent_run_id)
        stats = self._stats(run_id)
        if stats is not None:
            await stats.on_chat_model_start(serialized, messages)

    async def on_llm_new_token(
        self, token: str | list[str | dict[str, Any]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        run = self._run_of(run_id)
        if run is not None and token:
            run.mark_chunk()

    async def on_llm_end(
        self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        stats = self._stats(run_id)
        if stats is not None:
            await stats.on_llm_end(response)
        self._ended(run_id, parent_run_id, None)

    async def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._ended(run_id, parent_run_id, error)

    async def on_chain_end(
        self,
        outputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._ended(run_id, parent_run_id, None)

    async def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._ended(run_id, parent_run_id, error)
