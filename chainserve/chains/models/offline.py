"""The offline chat model: a real streaming `BaseChatModel` that needs no key and no network."""

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

OFFLINE_MODEL_NAME = "chainserve-offline"

_WORD = re.compile(r"\s*\S+")
_SETUP_HINT = "(Set OPENAI_API_KEY or OPENAI_BASE_URL to use a real model.)"


def _text_of(message: BaseMessage) -> str:
    """Flatten message content, keeping only text parts of multimodal content."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = [p if isinstance(p, str) else str(p.get("text", "")) for p in content]
    return " ".join(p for p in parts if p)


def _squash(text: str, limit: int = 200) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def compose_reply(messages: list[BaseMessage]) -> str:
    """Build the deterministic reply: restate the instruction and the last user message.

    Deriving the reply from the prompt (rather than canned text) lets developers see that
    their prompt template, variables and history actually reached the model.
    """
    system = [_text_of(m) for m in messages if m.type == "system"]
    human = [_text_of(m) for m in messages if m.type == "human"]
    turns = sum(1 for m in messages if m.type in ("human", "ai"))
    lines = [f"[offline model] You said: “{_squash(human[-1]) if human else ''}”."]
    if system:
        lines.append(f"My instruction was: “{_squash(system[-1])}”.")
    if turns > 1:
        lines.append(f"This conversation has {turns} messages so far.")
    lines.append(_SETUP_HINT)
    return "\n".join(lines)


def _count_tokens(text: str) -> int:
    return len(_WORD.findall(text))


class OfflineChatModel(BaseChatModel):
    """Streams a reply derived from its prompt, word by word, and reports token usage.

    It exists so `make serve` works with no key and no network, and it says what it is in
    every reply so nobody mistakes it for a hosted model.
    """

    model_name: str = Field(default=OFFLINE_MODEL_NAME, alias="model")
    temperature: float = 0.0
    delay: float = 0.015
    """Seconds between streamed words, so streaming is visible in a terminal or browser."""
    max_tokens: int | None = None
    """The most words (its tokens) a reply may have; a longer one ends with `length`."""

    model_config = ConfigDict(populate_by_name=True)

    @property
    def _llm_type(self) -> str:
        return "chainserve-offline"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "delay": self.delay}

    def _usage(self, messages: list[BaseMessage], reply: str) -> UsageMetadata:
        prompt_tokens = sum(_count_tokens(_text_of(m)) for m in messages)
        completion_tokens = _count_tokens(reply)
        return UsageMetadata(
            input_tokens=prompt_tokens,
            output_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )

    def _reply(self, messages: list[BaseMessage]) -> tuple[list[str], str]:
        """The reply's words, cut at `max_tokens`, and the finish reason that says whether."""
        words = _WORD.findall(compose_reply(messages))
        if self.max_tokens is not None and len(words) > self.max_tokens:
            return words[: self.max_tokens], "length"
        return words, "stop"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        words, reason = self._reply(messages)
        reply = "".join(words)
        message = AIMessage(
            content=reply,
            usage_metadata=self._usage(messages, reply),
            response_metadata={"model_name": self.model_name, "finish_reason": reason},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        words, reason = self._reply(messages)
        for word in words:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager:
                run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk
        yield self._final_chunk(messages, "".join(words), reason)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        words, reason = self._reply(messages)
        for index, word in enumerate(words):
            if index and self.delay > 0:
                await asyncio.sleep(self.delay)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager:
                await run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk
        yield self._final_chunk(messages, "".join(words), reason)

    def _final_chunk(
        self, messages: list[BaseMessage], reply: str, reason: str
    ) -> ChatGenerationChunk:
        """Carry usage and finish reason on a last empty chunk, as OpenAI's stream does."""
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=self._usage(messages, reply),
                response_metadata={"model_name": self.model_name, "finish_reason": reason},
                chunk_position="last",
            )
        )
