"""JSON encoding of chain output chunks, matching LangServe's wire shapes."""

import json
from typing import Any

import orjson
from pydantic import BaseModel

MESSAGE_TYPES = frozenset({"ai", "AIMessage", "AIMessageChunk"})
"""The `type` of a model's message as JSON: the chunks whose `content` is the answer's text."""


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        # Message chunks and documents serialize as their field dicts, as LangServe sends them.
        return value.model_dump()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def to_json(value: Any) -> str:
    """Encode one value for an SSE `data` line; newlines and quotes are escaped by JSON."""
    if type(value) is str:
        # The per-token case. orjson writes a str exactly as json.dumps does here (compact,
        # no ASCII escaping; checked over every code point below U+0800 and beyond), in a
        # fraction of the time; a lone surrogate, which orjson refuses, takes the slow path.
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            pass
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))


def to_jsonable(value: Any) -> Any:
    """A plain JSON-compatible copy, for JSON (non-streaming) responses."""
    return json.loads(to_json(value))
