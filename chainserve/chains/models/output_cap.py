"""The output cap, enforced on the stream rather than only asked of the provider.

`max_tokens` is a request: a provider that ignores it (a proxy that drops the field, a local
server looping on a bad prompt) would otherwise stream until the run's deadline, billing all
the way. So the answer's tokens are counted as they arrive, and once they pass the cap the
stream is cut and ends as the provider should have ended it, with `finish_reason: "length"`.

Counting costs nothing for most answers: no token is shorter than one UTF-8 byte, so no
tokenizer is loaded or run until the answer has as many bytes as the cap has tokens. From
then on each chunk is counted with the model's tiktoken encoding (exact for OpenAI models, an
estimate for others, as for the input limit), about half a microsecond a chunk.
"""

import asyncio
import logging
from typing import Any

import tiktoken
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from chainserve.chains.tokens.encodings import encoding_for_model

logger = logging.getLogger("chainserve.models")

LENGTH = "length"


class OutputBudget:
    """The tokens one answer may still have; `spend` says when a chunk would overdraw it."""

    def __init__(self, limit: int, model: str) -> None:
        self.limit = limit
        self.model = model
        self.tokens = 0
        self._bytes = 0
        self._held: list[str] = []
        self._encoding: tiktoken.Encoding | None = None

    async def overdraft(self, text: str) -> str | None:
        """Count `text`: None while the answer, with it, is within the limit; else the start
        of `text` that still fits (maybe ""), where the answer must end."""
        if not text:
            return None
        if self._encoding is None:
            self._bytes += len(text.encode())
            self._held.append(text)
            if self._bytes <= self.limit:
                return None
            # Loading an encoding takes 0.1-0.3 s the first time: not on the event loop.
            self._encoding = await asyncio.to_thread(encoding_for_model, self.model)
            before = self._held[:-1]
            self.tokens = len(self._encoding.encode_ordinary("".join(before)))
            self._held = []
        tokens = self._encoding.encode_ordinary(text)
        room = self.limit - self.tokens
        self.tokens += len(tokens)
        if self.tokens <= self.limit:
            return None
        # A token cut between the bytes of one character leaves no half character behind.
        return self._encoding.decode_bytes(tokens[:room]).decode("utf-8", errors="ignore")

    def log_cut(self) -> None:
        logger.warning(
            "the model provider went past max_tokens=%d (model %s); the stream was cut there "
            "and ends with finish_reason=length",
            self.limit,
            self.model,
        )


def delta_text(chunk: dict[str, Any]) -> str:
    """The generated text a provider's chunk dict carries: content, reasoning, tool arguments."""
    choices = chunk.get("choices")
    if type(choices) is list and len(choices) == 1 and type(choices[0]) is dict:
        delta = choices[0].get("delta")
        if type(delta) is dict and len(delta) == 1:  # the usual token: {"content": "..."}
            content = delta.get("content")
            if type(content) is str:
                return content
    texts: list[str] = []
    for choice in choices or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        for key in ("content", "reasoning_content", "reasoning"):
            value = delta.get(key)
            if isinstance(value, str):
                texts.append(value)
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                texts.extend(v for v in function.values() if isinstance(v, str))
    return "".join(texts)


def trimmed_chunk(chunk: dict[str, Any], text: str) -> dict[str, Any] | None:
    """`chunk` carrying only `text`, the part of it within the cap; None when it carries
    anything besides plain content (a tool call's arguments are never cut in half)."""
    choices: list[Any] = chunk.get("choices") or []
    if not text or len(choices) != 1 or not isinstance(choices[0], dict):
        return None
    delta = choices[0].get("delta")
    if not isinstance(delta, dict) or not isinstance(delta.get("content"), str):
        return None
    if any(value for key, value in delta.items() if key not in ("content", "role")):
        return None
    return {**chunk, "choices": [{**choices[0], "delta": {**delta, "content": text}}]}


def trimmed_generation(generation: ChatGenerationChunk, text: str) -> ChatGenerationChunk | None:
    """`generation` carrying only `text`, as `trimmed_chunk` for LangChain's chunks."""
    message = generation.message
    if (
        not text
        or not isinstance(message.content, str)
        or generation_text(generation) != (message.content)
    ):
        return None
    return ChatGenerationChunk(message=AIMessageChunk(content=text, id=message.id))


def generation_text(generation: ChatGenerationChunk) -> str:
    """The generated text of a LangChain chunk: its text plus any tool-call arguments."""
    message = generation.message
    texts: list[str] = [message.text]
    if isinstance(message, AIMessageChunk):
        for call in message.tool_call_chunks:
            texts.extend(v for v in (call.get("name"), call.get("args")) if isinstance(v, str))
    return "".join(texts)


def length_chunk() -> dict[str, Any]:
    """The closing chunk of an answer cut at the cap, as a provider would send it."""
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": LENGTH}]}


def length_generation() -> ChatGenerationChunk:
    return ChatGenerationChunk(
        message=AIMessageChunk(
            content="",
            response_metadata={"finish_reason": LENGTH, "model_provider": "openai"},
            chunk_position="last",
        ),
        generation_info={"finish_reason": LENGTH},
    )


def capped(requested: int | None, cap: int | None) -> int | None:
    """The smaller of what a request asks for and the server's cap (None: no limit)."""
    if requested is None or cap is None:
        return requested if cap is None else cap
    return min(requested, cap)
