"""The Vercel AI SDK's UI message stream (protocol v1), as `useChat` reads it.

Parts: `start`, `start-step`, then `text-*` (and `reasoning-*`, `tool-input-*` when a
chain's message chunks carry them; a structured output as one `data-object` part, updated
in place; an agent's model turns as steps, with `tool-output-available` for what its tools
returned), `finish-step`, `finish`, and `data: [DONE]`. Failures
become an `error` part; a cancelled run an `abort` part.
"""

import json
from typing import Any

from fastapi.sse import format_sse_event

from chainserve.api.runs.encoding import MESSAGE_TYPES, to_json
from chainserve.api.runs.log import RunEvent

HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
_FINISH = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
}


def _source_part(source: dict[str, Any]) -> dict[str, Any]:
    """A retrieved chunk as the AI SDK's `source-document` part (shown by `useChat` UIs)."""
    title = source.get("title") or source.get("doc_id") or "document"
    return {
        "type": "source-document",
        "sourceId": str(source.get("chunk_id") or source.get("doc_id")),
        "mediaType": "text/plain",
        "title": str(title),
        "providerMetadata": {"chainserve": {k: v for k, v in source.items() if v is not None}},
    }


def _part(body: dict[str, Any]) -> bytes:
    return format_sse_event(data_str=to_json(body))


class UIMessageProtocol:
    headers = HEADERS

    def __init__(self) -> None:
        self._open: set[str] = set()  # "text" / "reasoning" blocks begun and not yet ended
        self._tools: dict[int, dict[str, str]] = {}  # tool calls begun, by index
        self._model_turns = 0  # an agent's model steps begun

    def frame(self, event: RunEvent) -> bytes:
        data = json.loads(event.data)
        if event.event == "metadata":
            metadata = {"runId": data["run_id"], "chain": data["chain"], "model": data["model"]}
            start = {"type": "start", "messageId": data["run_id"], "messageMetadata": metadata}
            return _part(start) + _part({"type": "start-step"})
        if event.event == "data":
            return self._chunk(data)
        if event.event == "reasoning":
            return self._delta("reasoning", data["delta"])
        if event.event in ("tool_call_delta", "tool_call"):
            return self._tool_input(event.event, data)
        if event.event == "step":
            return self._step(data)
        if event.event == "tool_result":
            return self._tool_output(data)
        if event.event == "object":
            # One live-updating data part: the AI SDK replaces a data part with the same id.
            return _part({"type": "data-object", "id": "output", "data": data["value"]})
        if event.event == "sources":
            return b"".join(_part(_source_part(source)) for source in data.get("sources", ()))
        if event.event == "end":
            metadata = {"usage": data.get("usage"), "timings": data.get("timings")}
            reason = _FINISH.get(data.get("finish_reason") or "stop", "other")
            finish = {"type": "finish", "finishReason": reason, "messageMetadata": metadata}
            return (
                self._close() + _part({"type": "finish-step"}) + _part(finish) + b"data: [DONE]\n\n"
            )
        if event.event == "error":
            if data.get("code") == "cancelled":
                ending = {"type": "abort", "reason": data.get("message", "cancelled")}
            else:
                ending = {"type": "error", "errorText": data.get("message", "The run failed.")}
            return self._close() + _part(ending) + b"data: [DONE]\n\n"
        return b""

    def _chunk(self, data: Any) -> bytes:
        if isinstance(data, str):
            return self._delta("text", data)
        if not isinstance(data, dict) or data.get("type") not in MESSAGE_TYPES:
            return b""  # a value (structured output, a dict): its `object` events carry it
        content = data.get("content")
        # Reasoning and tool calls arrive as their own events (`chains/output_events.py`).
        return self._delta("text", content) if isinstance(content, str) and content else b""

    def _delta(self, kind: str, text: str) -> bytes:
        frames = b""
        if kind not in self._open:
            self._open.add(kind)
            frames += _part({"type": f"{kind}-start", "id": kind})
        return frames + _part({"type": f"{kind}-delta", "id": kind, "delta": text})

    def _tool_input(self, kind: str, call: dict[str, Any]) -> bytes:
        """`tool-input-start`, `-delta`s as the arguments stream, `-available` once whole."""
        index = int(call["index"])
        frames = b""
        tool = self._tools.get(index)
        if tool is None:
            tool = self._tools[index] = {"id": call["id"] or f"call-{index}", "name": call["name"]}
            frames += _part(
                {"type": "tool-input-start", "toolCallId": tool["id"], "toolName": tool["name"]}
            )
        if kind == "tool_call_delta":
            if call["arguments_delta"]:
                delta = call["arguments_delta"]
                frames += _part(
                    {"type": "tool-input-delta", "toolCallId": tool["id"], "inputTextDelta": delta}
                )
            return frames
        available = {
            "type": "tool-input-available",
            "toolCallId": tool["id"],
            "toolName": tool["name"],
        }
        return frames + _part({**available, "input": call["arguments"]})

    def _step(self, step: dict[str, Any]) -> bytes:
        """An agent's model turn is an AI SDK step: its text, tool calls and their results."""
        if step.get("type") != "model" or step.get("status") != "start":
            return b""
        self._model_turns += 1
        if self._model_turns == 1:
            return b""  # the stream's first step began with it
        return self._close() + _part({"type": "finish-step"}) + _part({"type": "start-step"})

    def _tool_output(self, result: dict[str, Any]) -> bytes:
        call_id = str(result.get("tool_call_id") or "")
        if result.get("status") == "error":
            error = {"type": "tool-output-error", "toolCallId": call_id}
            return _part({**error, "errorText": str(result.get("content", ""))})
        output = {"type": "tool-output-available", "toolCallId": call_id}
        return _part({**output, "output": result.get("content")})

    def _close(self) -> bytes:
        frames = b"".join(_part({"type": f"{kind}-end", "id": kind}) for kind in sorted(self._open))
        self._open.clear()
        return frames

    def error_body(self, status: int, error: dict[str, Any]) -> dict[str, Any]:
        return {"error": error}
