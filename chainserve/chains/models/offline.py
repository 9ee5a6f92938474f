"""The offline chat model: a real streaming `BaseChatModel` that needs no key and no network."""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import ToolCall, ToolCallChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field

from chainserve.chains.models.offline_tools import (
    ToolTurn,
    arguments_for,
    message_text,
    plan_turn,
    tool_results,
)

OFFLINE_MODEL_NAME = "chainserve-offline"

_WORD = re.compile(r"\s*\S+")
_SETUP_HINT = "(Set OPENAI_API_KEY or OPENAI_BASE_URL to use a real model.)"


def _squash(text: str, limit: int = 200) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def compose_reply(messages: list[BaseMessage]) -> str:
    """Build the deterministic reply: restate the instruction and the last user message.

    Deriving the reply from the prompt (rather than canned text) lets developers see that
    their prompt template, variables and history actually reached the model.
    """
    system = [message_text(m) for m in messages if m.type == "system"]
    human = [message_text(m) for m in messages if m.type == "human"]
    turns = sum(1 for m in messages if m.type in ("human", "ai"))
    lines = [f"[offline model] You said: “{_squash(human[-1]) if human else ''}”."]
    for name, result in tool_results(messages):
        lines.append(f"The {name} tool returned: “{_squash(result)}”.")
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
        prompt_tokens = sum(_count_tokens(message_text(m)) for m in messages)
        completion_tokens = _count_tokens(reply)
        return UsageMetadata(
            input_tokens=prompt_tokens,
            output_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Tools in OpenAI's format, as `ChatOpenAI.bind_tools` binds them; what the model
        does with them is `offline_tools.py`'s."""
        strict = kwargs.pop("strict", None)
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> "_Reply":
        """This turn's answer: a tool call, JSON text under a response format, or text cut at
        `max_tokens` (the finish reason says whether)."""
        turn = plan_turn(messages, kwargs.get("tools") or (), kwargs.get("tool_choice"))
        if turn is not None:
            previous = sum(len(getattr(m, "tool_calls", None) or ()) for m in messages)
            return _Reply(_pieces(json.dumps(turn.arguments)), "tool_calls", turn, previous + 1)
        schema = _response_schema(kwargs.get("response_format"))
        if schema is not None:
            text = json.dumps(arguments_for(schema, _user_words(messages)))
            return _Reply(_pieces(text), "stop")
        words = _WORD.findall(compose_reply(messages))
        if self.max_tokens is not None and len(words) > self.max_tokens:
            return _Reply(words[: self.max_tokens], "length")
        return _Reply(words, "stop")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self._reply(messages, kwargs)
        message = AIMessage(
            content=reply.content,
            tool_calls=reply.tool_calls(),
            usage_metadata=self._usage(messages, reply.text),
            response_metadata={"model_name": self.model_name, "finish_reason": reply.reason},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._reply(messages, kwargs)
        for index in range(len(reply.pieces)):
            chunk = reply.chunk(index)
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
        yield self._final_chunk(messages, reply)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        reply = self._reply(messages, kwargs)
        for index in range(len(reply.pieces)):
            if index and self.delay > 0:
                await asyncio.sleep(self.delay)
            chunk = reply.chunk(index)
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
        yield self._final_chunk(messages, reply)

    def _final_chunk(self, messages: list[BaseMessage], reply: "_Reply") -> ChatGenerationChunk:
        """Carry usage and finish reason on a last empty chunk, as OpenAI's stream does."""
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=self._usage(messages, reply.text),
                response_metadata={"model_name": self.model_name, "finish_reason": reply.reason},
                chunk_position="last",
            )
        )


@dataclass(frozen=True)
class _Reply:
    """One turn of the offline model: the streamed pieces of its text or of its tool call's
    arguments, and why it ended."""

    pieces: list[str]
    reason: str
    tool: ToolTurn | None = None
    call_number: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def content(self) -> str:
        return "" if self.tool else self.text

    @property
    def call_id(self) -> str:
        return f"call_offline_{self.call_number}"

    def tool_calls(self) -> list[ToolCall]:
        if self.tool is None:
            return []
        return [ToolCall(name=self.tool.name, args=self.tool.arguments, id=self.call_id)]

    def chunk(self, index: int) -> ChatGenerationChunk:
        piece = self.pieces[index]
        if self.tool is None:
            return ChatGenerationChunk(message=AIMessageChunk(content=piece))
        first = index == 0
        call = ToolCallChunk(
            name=self.tool.name if first else None,
            args=piece,
            id=self.call_id if first else None,
            index=0,
        )
        return ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[call]))


_PIECE = re.compile(r".{1,8}", re.DOTALL)


def _pieces(text: str) -> list[str]:
    """JSON text in the small pieces a provider streams it in (never none: `{}` is a piece)."""
    return _PIECE.findall(text) or [text]


def _user_words(messages: list[BaseMessage]) -> str:
    return next((message_text(m) for m in reversed(messages) if m.type == "human"), "")


def _response_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema a bound `response_format` asks for: OpenAI's `json_schema` shape, a
    pydantic model, a JSON schema, or `json_object` (any object: `{}` has no required keys)."""
    if response_format is None:
        return None
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        return response_format.model_json_schema()
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_object":
            return {"type": "object", "properties": {"answer": {"type": "string"}}}
        inner = response_format.get("json_schema")
        schema = inner.get("schema") if isinstance(inner, dict) else None
        if isinstance(schema, dict):
            return schema
        if "properties" in response_format or response_format.get("type") == "object":
            return response_format
    return None
