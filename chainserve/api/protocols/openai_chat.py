"""OpenAI's Chat Completions wire format: chunks, the final usage chunk, `[DONE]`, errors."""

import json
from typing import Any

from fastapi.sse import format_sse_event
from langchain_core.messages import BaseMessage

from chainserve.api.protocols.object_text import UNSTREAMABLE, ObjectText
from chainserve.api.runs.encoding import MESSAGE_TYPES, to_json
from chainserve.api.runs.log import RunEvent
from chainserve.chains.agents import agent_answer

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}


def openai_error(
    status: int, code: str | None, message: str, param: str | None = None
) -> dict[str, Any]:
    """`{"error": {...}}` in OpenAI's shape; the official SDKs pick the exception by status."""
    kind = _TYPES.get(status) or (
        "rate_limit_error"
        if status == 429
        else "server_error"
        if status >= 500
        else "invalid_request_error"
    )
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def text_of(value: Any) -> str:
    """The text in a chain output or chunk: a string, or a model message's text content (a
    message as LangServe's JSON too). Any other value (a dict, a list) is not text."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        content = value.get("content") if value.get("type") in MESSAGE_TYPES else None
    elif isinstance(value, BaseMessage):
        content = value.content
    else:
        return ""
    if isinstance(content, list):  # content blocks: only the text ones are text
        return "".join(
            str(block.get("text", "")) if isinstance(block, dict) else str(block)
            for block in content
            if isinstance(block, str) or (isinstance(block, dict) and block.get("type") == "text")
        )
    return content if isinstance(content, str) else ""


def tool_call_json(call: dict[str, Any]) -> dict[str, Any]:
    """A complete tool call (`chains/output_events.py`) in Chat Completions' shape."""
    arguments = call["arguments"]
    text = arguments if isinstance(arguments, str) else to_json(arguments)
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": call["name"], "arguments": text},
    }


def completion_message(output: Any) -> tuple[dict[str, Any], str | None]:
    """A chain's whole output as a Chat Completions `message`, and the finish reason it
    implies: text as content, a model message's text and tool calls, any other value (a
    structured output, a dict) as its JSON text."""
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    answer = agent_answer(output)  # an agent's final state answers with its answer
    output = output if answer is None else answer
    if isinstance(output, BaseMessage):
        message["content"] = text_of(output)
        calls = getattr(output, "tool_calls", None) or []
        if calls:
            message["tool_calls"] = [
                tool_call_json({"id": c.get("id") or "", "name": c["name"], "arguments": c["args"]})
                for c in calls
            ]
            return message, "tool_calls"
        return message, None
    message["content"] = output if isinstance(output, str) else to_json(output)
    return message, None


def openai_usage(usage: dict[str, Any] | None) -> dict[str, int] | None:
    if not usage:
        return None
    prompt, completion = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class OpenAIChatProtocol:
    """One `chat.completion.chunk` stream: role first, content deltas (text, or a structured
    output's JSON text), tool-call deltas, finish, usage, DONE."""

    headers: dict[str, str] = {}  # noqa: RUF012 - never mutated

    def __init__(self, completion_id: str, model: str, created: int, include_usage: bool) -> None:
        self._base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        self._include_usage = include_usage
        self._object_text = ObjectText()
        self._calls_sent: set[int] = set()
        """Tool calls (by index) whose first delta went out."""

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        body: dict[str, Any] = {**self._base, "choices": [choice]}
        if self._include_usage:
            body["usage"] = None
        return _data(body)

    def frame(self, event: RunEvent) -> bytes:
        if event.event == "metadata":
            return self._chunk({"role": "assistant", "content": "", "refusal": None})
        if event.event == "data":
            text = text_of(json.loads(event.data))
            return self._chunk({"content": text}) if text else b""
        if event.event == "object":
            return self._object(json.loads(event.data))
        if event.event in ("tool_call_delta", "tool_call"):
            return self._tool_call(event.event, json.loads(event.data))
        if event.event == "reasoning":
            # Not in OpenAI's schema; the field OpenAI-compatible servers (vLLM, DeepSeek) use.
            return self._chunk({"reasoning_content": json.loads(event.data)["delta"]})
        if event.event == "end":
            return self._finish(json.loads(event.data))
        if event.event == "error":
            error = json.loads(event.data)
            status = 499 if error.get("code") == "cancelled" else 500
            body = openai_error(status, error.get("code"), error.get("message", ""))
            if "retry_after" in error:  # a 429 after the headers: when to try again
                body["error"]["retry_after"] = error["retry_after"]
            return _data(body)
        return b""

    def _object(self, body: dict[str, Any]) -> bytes:
        """A structured output as content: its JSON text, streamed as it grows."""
        delta = self._object_text.delta(body)
        if delta is None:
            return _data(openai_error(500, "output_unstreamable", UNSTREAMABLE))
        return self._chunk({"content": delta}) if delta else b""

    def _tool_call(self, kind: str, call: dict[str, Any]) -> bytes:
        if "step" in call:
            return b""  # an agent's own tool call: it runs it, the client sees the answer
        index = int(call["index"])
        if kind == "tool_call" and index in self._calls_sent:
            return b""  # its arguments already went out as deltas
        first = index not in self._calls_sent
        self._calls_sent.add(index)
        if kind == "tool_call":  # a whole call with no deltas before it
            arguments = tool_call_json(call)["function"]["arguments"]
        else:
            arguments = call["arguments_delta"]
        piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
        if first:
            piece = {"index": index, "id": call["id"], "type": "function",
                     "function": {"name": call["name"], "arguments": arguments}}  # fmt: skip
        return self._chunk({"tool_calls": [piece]})

    def _finish(self, summary: dict[str, Any]) -> bytes:
        reason = summary.get("finish_reason") or "stop"
        if self._calls_sent:
            reason = "tool_calls"
        elif reason == "tool_calls":
            reason = "stop"  # the calls were made inside the chain, not asked of the client
        frames = self._chunk({}, reason)
        if self._include_usage:
            usage = openai_usage(summary.get("usage"))
            frames += _data({**self._base, "choices": [], "usage": usage})
        return frames + b"data: [DONE]\n\n"

    def error_body(self, status: int, error: dict[str, Any]) -> dict[str, Any]:
        return openai_error(status, error.get("code"), error.get("message", ""))


def _data(body: dict[str, Any]) -> bytes:
    return format_sse_event(data_str=to_json(body))
