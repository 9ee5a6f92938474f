"""One chain execution: its id, timings and usage, gathered for the `end` event and the logs."""

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig

from chainserve.api.observability.metrics import OBSERVING, RequestObservation
from chainserve.api.runs.log import RunStatus
from chainserve.chains import ModelInfo
from chainserve.chains.output_events import OutputEvents

logger = logging.getLogger("chainserve.runs")


SideEventSink = Callable[[str, Any], Awaitable[None]]
RESERVED_EVENTS = frozenset({"metadata", "data", "end", "error"})
"""Our own event names: a chain's custom event by one of these names is not forwarded."""
_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class UsageCollector(AsyncCallbackHandler):
    """Sums token usage and keeps the last finish reason of every model call in a run, and
    passes on the custom events a chain dispatches (the `rag` chain's `sources`)."""

    run_inline = True
    """Awaited in place: spares LangChain a `gather` per streamed token for this handler."""

    def __init__(self) -> None:
        self.usage: dict[str, int] | None = None
        self.finish_reason: str | None = None
        self.approx_input_tokens = 0
        self.side_events: dict[str, Any] = {}
        """The last data of each custom event, for the run's `end` summary."""
        self.called_model: str | None = None
        """The model the run's last model call named (`ls_model_name`), for its log line."""
        self.sink: SideEventSink | None = None
        """Where custom events go as they happen (the run log, for streamed runs)."""

    async def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: uuid.UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if name in RESERVED_EVENTS or not _EVENT_NAME.match(name):
            return
        self.side_events[name] = data
        if self.sink is not None:
            await self.sink(name, data)

    async def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        # Providers report usage only at the end; a cancelled run still deserves an estimate.
        self.approx_input_tokens += sum(count_tokens_approximately(m) for m in messages)
        metadata = kwargs.get("metadata") or {}
        if isinstance(metadata.get("ls_model_name"), str):
            self.called_model = metadata["ls_model_name"]

    async def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                if isinstance(generation, ChatGeneration):
                    self._add(generation)

    def _add(self, generation: ChatGeneration) -> None:
        message = generation.message
        reason = message.response_metadata.get("finish_reason")
        if reason:
            self.finish_reason = str(reason)
        usage = getattr(message, "usage_metadata", None)
        if usage:
            total = self.usage or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
            for key in total:
                total[key] += int(usage.get(key, 0))
            self.usage = total


@dataclass
class Run:
    """Book-keeping for one run of one chain."""

    chain: str
    model: ModelInfo
    model_name: str
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)
    first_chunk_at: float | None = None
    ended_at: float | None = None
    status: RunStatus = "running"
    thread_id: str | None = None
    owner: str | None = None
    """The key id the run belongs to (None: unowned, a server without keys)."""
    chunks: int = 0
    stats: UsageCollector = field(default_factory=UsageCollector)
    outputs: OutputEvents = field(default_factory=OutputEvents, repr=False)
    """What the run's chunks mean beyond text: structured output, tool calls."""
    streamed: bool = True
    """False for a run answered in one piece: its "first token" is its whole answer."""
    error_code: str | None = None
    retry_until: float = 0.0
    """When the model request that failed will be sent again (`time.monotonic()`); 0: none."""
    observer: RequestObservation | None = field(default_factory=OBSERVING.get, repr=False)
    """The metrics of the request that started the run (None outside a request)."""

    def config(self, base: RunnableConfig) -> RunnableConfig:
        """The LangChain config for this run: same run id in traces, our usage callback."""
        return {**base, "run_id": uuid.UUID(self.run_id), "callbacks": [self.stats]}

    @property
    def model_called(self) -> str:
        """The model the run's last model call named, else the one the chain was said to use."""
        return self.stats.called_model or self.model_name

    def note_retry(self, when: float) -> None:
        self.retry_until = when

    def mark_chunk(self) -> None:
        self.chunks += 1
        if self.first_chunk_at is None:
            self.first_chunk_at = time.monotonic()

    def usage(self) -> dict[str, Any] | None:
        """The provider's figures; without them (a run cut short, a provider that reports
        none, an answer cut at the output cap) an estimate marked `approximate`."""
        if self.stats.usage is not None:
            return self.stats.usage
        if not (self.chunks or self.stats.approx_input_tokens):
            return None
        prompt, output = self.stats.approx_input_tokens, self.chunks
        return {
            "input_tokens": prompt,
            "output_tokens": output,
            "total_tokens": prompt + output,
            "approximate": True,
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "chain": self.chain,
            "model": {"provider": self.model.provider, "name": self.model_name},
        }

    def timings(self) -> dict[str, float | None]:
        end = self.ended_at or time.monotonic()
        ttft = None if self.first_chunk_at is None else self.first_chunk_at - self.started
        return {
            "time_to_first_token_ms": None if ttft is None else round(ttft * 1000, 1),
            "total_ms": round((end - self.started) * 1000, 1),
        }

    def summary(self) -> dict[str, Any]:
        summary = {
            "run_id": self.run_id,
            "usage": self.usage(),
            "finish_reason": self.stats.finish_reason,
            "timings": self.timings(),
        }
        for name, data in self.stats.side_events.items():
            # A `{"sources": [...]}` event adds `sources` to the summary.
            extra = data if isinstance(data, dict) else {name: data}
            summary.update({k: v for k, v in extra.items() if k not in summary})
        return summary

    def finish(self, status: RunStatus, error_code: str | None = None) -> None:
        self.status = status
        self.error_code = error_code
        self.ended_at = time.monotonic()
        if self.observer is not None:
            self.observer.metrics.observe_run(self, self.observer.key_id())
        t = self.timings()
        usage = self.usage() or {}
        fields = {
            "run_id": self.run_id,
            "run_status": status,
            "chain": self.chain,
            "model": self.model_called,
            "ttft_ms": t["time_to_first_token_ms"],
            "total_ms": t["total_ms"],
            "tokens_in": usage.get("input_tokens"),
            "tokens_out": usage.get("output_tokens"),
        }
        logger.info(
            "run %s %s chain=%s model=%s ttft_ms=%s total_ms=%s tokens_in=%s tokens_out=%s",
            *fields.values(),
            extra=fields,
        )
