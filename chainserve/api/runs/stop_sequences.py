"""OpenAI's `stop` for any chain: its output ends before the first stop sequence.

A chain with a `stop` knob passes the sequences to its model too; most chains have none (a
prompt, a retrieval step and a model, built by someone else), and ignoring the parameter would
answer 200 with text the client asked not to get. So the run's text is cut here, whatever
made it: chunks are held back only while their end could still be the start of a stop
sequence, and once one appears the chain's stream is closed, which hangs up on the provider.
"""

from collections.abc import AsyncIterator, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, BaseMessageChunk

MAX_STOPS = 4
"""As OpenAI: up to four sequences."""


def _text(chunk: Any) -> str | None:
    """The text a chunk carries, or None for a chunk that is not text (a value, an event)."""
    if isinstance(chunk, str):
        return chunk
    if isinstance(chunk, BaseMessageChunk) and isinstance(chunk.content, str):
        return chunk.content
    return None


def _with_text(chunk: Any, text: str) -> Any:
    if isinstance(chunk, str):
        return text
    assert isinstance(chunk, BaseMessage)
    return chunk.model_copy(update={"content": text})


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of `text` could begin a stop sequence."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """`text` up to its first stop sequence, and whether one was found."""
    found = [index for stop in stops if (index := text.find(stop)) >= 0]
    return (text[: min(found)], True) if found else (text, False)


async def stop_at(chunks: AsyncIterator[Any], stops: Sequence[str]) -> AsyncIterator[Any]:
    """`chunks` until the text they carry reaches one of `stops` (which is not included)."""
    pending: list[tuple[Any, str]] = []
    try:
        async for chunk in chunks:
            text = _text(chunk)
            if text is None:
                for held, _ in pending:  # a stop cannot span a chunk that is not text
                    yield held
                pending = []
                yield chunk
                continue
            pending.append((chunk, text))
            joined = "".join(piece for _, piece in pending)
            kept, stopped = cut_at_stop(joined, stops)
            if stopped:
                for piece in _upto(pending, len(kept)):
                    yield piece
                return
            safe = len(joined) - _held_back(joined, stops)
            released = 0
            while pending and released + len(pending[0][1]) <= safe:
                held, piece = pending.pop(0)
                released += len(piece)
                yield held
        for held, _ in pending:
            yield held
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _upto(pending: list[tuple[Any, str]], size: int) -> list[Any]:
    """The pending chunks holding the first `size` characters, the last one trimmed."""
    out: list[Any] = []
    for chunk, text in pending:
        if size <= 0:
            break
        out.append(chunk if len(text) <= size else _with_text(chunk, text[:size]))
        size -= len(text)
    return out


def cut_output(output: Any, stops: Sequence[str]) -> Any:
    """A whole output (an invoke's) up to its first stop sequence, when it is text."""
    if isinstance(output, str):
        return cut_at_stop(output, stops)[0]
    if isinstance(output, BaseMessage) and isinstance(output.content, str):
        return output.model_copy(update={"content": cut_at_stop(output.content, stops)[0]})
    return output
