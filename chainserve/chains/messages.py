"""Chat message input that accepts both OpenAI role dicts and LangChain type dicts."""

from typing import Annotated, Any

from langchain_core.messages import BaseMessage, convert_to_messages
from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

ROLES = {
    "user": "human",
    "human": "human",
    "assistant": "ai",
    "ai": "ai",
    "system": "system",
    "developer": "system",
    "tool": "tool",
}


def _check_content(content: Any) -> None:
    if isinstance(content, str):
        return
    if isinstance(content, list) and all(isinstance(p, str | dict) for p in content):
        return
    raise ValueError("message content must be a string or a list of content parts")


def coerce_message(value: Any) -> BaseMessage:
    """Turn one wire message into a LangChain message, or raise `ValueError` saying why not.

    LangChain's own coercion is lenient (bare strings, tuples) and raises assorted
    exception types; a web API wants one strict shape and one clear 422.
    """
    if isinstance(value, BaseMessage):
        return value
    if not isinstance(value, dict):
        raise ValueError('a message must be an object like {"role": "user", "content": "..."}')
    kind = value.get("role", value.get("type"))
    if not isinstance(kind, str) or kind not in ROLES:
        allowed = ", ".join(sorted(ROLES))
        raise ValueError(f"message role/type must be one of: {allowed}")
    if ROLES[kind] == "ai" and value.get("content") is None and value.get("tool_calls"):
        value = {**value, "content": ""}  # OpenAI leaves it out (or null) beside tool calls
    if "content" not in value:
        raise ValueError("message is missing 'content'")
    _check_content(value["content"])
    if ROLES[kind] == "tool" and not isinstance(value.get("tool_call_id"), str):
        raise ValueError("a tool message needs a 'tool_call_id'")
    fields = {k: v for k, v in value.items() if k not in ("role", "type")}
    try:
        return convert_to_messages([{"role": ROLES[kind], **fields}])[0]
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise ValueError(f"invalid message: {exc}") from None


_MESSAGE_SCHEMA = {
    "type": "object",
    "title": "Message",
    "description": 'OpenAI style {"role", "content"} or LangChain style {"type", "content"}.',
    "properties": {
        "role": {"type": "string", "enum": sorted(ROLES)},
        "type": {"type": "string", "enum": sorted(ROLES)},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {}}]},
    },
    "required": ["content"],
}

ChatMessage = Annotated[
    BaseMessage,
    BeforeValidator(coerce_message),
    PlainSerializer(lambda m: m.model_dump(), return_type=dict),
    WithJsonSchema(_MESSAGE_SCHEMA),
]
"""A pydantic field type for one chat message in either wire form."""

ChatMessages = Annotated[list[ChatMessage], Field(min_length=1)]
