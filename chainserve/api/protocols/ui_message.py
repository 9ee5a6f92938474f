"""The Vercel AI SDK's UI message stream (protocol v1), as `useChat` reads it.

Parts: `start`, `start-step`, then `text-*` (and `reasoning-*`, `tool-input-*` when a
chain's message chunks carry them), `finish-step`, `finish`, and `data: [DONE]`. Failures
become an `error` part; a cancelled run an `abort` part.
"""

import json
from typing import Any

from fastapi.sse import format_sse_event

from chainserve.api.runs.encoding import to_json
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
        self._tools: dict[int, dict[str, str]] = {}  # tool-call chunks by index

    def frame(self, event: RunEvent) -> bytes:
        data = json.loads(event.data)
        if event.event == "metadata":
            metadata = {"runId": data["run_id"], "chain": data["chain"], "model": data["model"]}
            start = {"type": "start", "messageId": data["run_id"], "messageMetadata": metadata}
            return _part(start) + _part({"type": "start-step"})
        if event.event == "data":
            return self._chunk(data)
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
        if not isinstance(data, dict):
            return b""
        frames = b""
        reasoning = (data.get("additional_kwargs") or {}).get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            frames += self._delta("reasoning", reasoning)
        content = data.get("content")
        if isinstance(content, str) and content:
            frames += self._delta("text", content)
        for call in data.get("tool_call_chunks") or []:
            frames += self._tool_chunk(call)
        return frames

    def _delta(self, kind: str, text: str) -> bytes:
        frames = b""
        if kind not in self._open:
            self._open.add(kind)
            frames += _part({"type": f"{kind}-start", "id": kind})
        return frames + _part({"type": f"{kind}-delta", "id": kind, "delta": text})

    def _tool_chunk(self, call: dict[str, Any]) -> bytes:
        index = int(call.get("index") or 0)
        frames = b""
        tool = self._tools.get(index)
        if tool is None:
            tool = {
                "id": str(call.get("id") or f"call-{index}"),
                "name": str(call.get("name") or ""),
                "args": "",
            }
            self._tools[index] = tool
            frames += _part(
                {"type": "tool-input-start", "toolCallId": tool["id"], "toolName": tool["name"]}
            )
        if call.get("args"):
            tool["args"] += str(call["args"])
            frames += _part(
                {
                    "type": "tool-input-delta",
                    "toolCallId": tool["id"],
                    "inputTextDelta": str(call["args"]),
                }
            )
        return frames

    def _close(self) -> bytes:
        frames = b"".join(_part({"type": f"{kind}-end", "id": kind}) for kind in sorted(self._open))
        self._open.clear()
        for tool in self._tools.values():
            try:
                arguments: Any = json.loads(tool["args"] or "{}")
            except ValueError:
                arguments = tool["args"]
            frames += _part(
                {
                    "type": "tool-input-available",
                    "toolCallId": tool["id"],
                    "toolName": tool["name"],
                    "input": arguments,
                }
            )
        self._tools.clear()
        return frames

    def error_body(self, status: int, error: dict[str, Any]) -> dict[str, Any]:
        return {"error": error}
