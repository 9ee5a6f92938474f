"""OpenAI's Chat Completions wire format: chunks, the final usage chunk, `[DONE]`, errors."""

import json
from typing import Any

from fastapi.sse import format_sse_event

from chainserve.api.runs.encoding import to_json
from chainserve.api.runs.log import RunEvent

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
    """The text in a chain output or chunk: a string, or a message's string content."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    content = getattr(value, "content", None)
    return content if isinstance(content, str) else ""


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
    """One `chat.completion.chunk` stream: role first, content deltas, finish, usage, DONE."""

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
        if event.event == "end":
            return self._finish(json.loads(event.data))
        if event.event == "error":
            error = json.loads(event.data)
            status = 499 if error.get("code") == "cancelled" else 500
            return _data(openai_error(status, error.get("code"), error.get("message", "")))
        return b""

    def _finish(self, summary: dict[str, Any]) -> bytes:
        frames = self._chunk({}, summary.get("finish_reason") or "stop")
        if self._include_usage:
            usage = openai_usage(summary.get("usage"))
            frames += _data({**self._base, "choices": [], "usage": usage})
        return frames + b"data: [DONE]\n\n"

    def error_body(self, status: int, error: dict[str, Any]) -> dict[str, Any]:
        return openai_error(status, error.get("code"), error.get("message", ""))


def _data(body: dict[str, Any]) -> bytes:
    return format_sse_event(data_str=to_json(body))
