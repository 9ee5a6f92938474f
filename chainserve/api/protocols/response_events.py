"""A run's events folded into OpenAI Responses stream events and the `response` object.

One fold serves every way a response is read (streamed, awaited, retrieved, resumed after a
`sequence_number`): the same run events always give the same events, numbered alike, and the
same output items with the same ids.
"""

import copy
import json
from typing import Any, Literal

from chainserve.api.protocols.object_text import UNSTREAMABLE, ObjectText
from chainserve.api.protocols.openai_chat import text_of, tool_call_json
from chainserve.api.runs.log import RunEvent

ResponseStatus = Literal["in_progress", "completed", "incomplete", "failed", "cancelled"]
ResponseEvent = dict[str, Any]

CONNECTION_ERRORS = frozenset({"lagged", "shutting_down", "store_unavailable"})
"""Errors of one connection, not of the run, which goes on: an `error` event alone, never
`response.failed` (a retrieve or a resumed stream still has the response)."""


def responses_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's usage as the Responses API reports it. chainserve does not break tokens down
    (cached, reasoning), so those details are 0."""
    if not usage:
        return None
    prompt, output = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + output,
    }


class ResponseFold:
    """Folds one run's events, in order, into stream events and the response so far."""

    def __init__(self, head: dict[str, Any]) -> None:
        self.head = head
        """The response's fixed fields: id, model, created_at and the request's echo."""
        self.status: ResponseStatus = "in_progress"
        self.output: list[dict[str, Any]] = []
        self.usage: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.incomplete: dict[str, Any] | None = None
        self.completed_at: int | None = None
        self._suffix = str(head["id"]).removeprefix("resp_")
        self._seq = 0
        self._events: list[ResponseEvent] = []
        self._open: int | None = None
        """The message or reasoning item text goes to (its output index)."""
        self._calls: dict[int, int] = {}
        """Open function calls: the run's call index to its output index."""
        self._object = ObjectText()

    @property
    def ended(self) -> bool:
        return self.status != "in_progress"

    def response(self) -> dict[str, Any]:
        """The `response` object as it stands."""
        return {
            **self.head,
            "status": self.status,
            "completed_at": self.completed_at,
            "error": self.error,
            "incomplete_details": self.incomplete,
            "output": copy.deepcopy(self.output),
            "usage": self.usage,
        }

    def feed(self, event: RunEvent) -> list[ResponseEvent]:
        """The stream events one run event adds (none once the response has ended)."""
        self._events = []
        if self.ended:
            return []
        name = event.event
        if name == "metadata":
            self._emit("response.created", response=self.response())
            self._emit("response.in_progress", response=self.response())
        elif name == "data":
            self._text("message", text_of(json.loads(event.data)))
        elif name == "reasoning":
            self._text("reasoning", str(json.loads(event.data).get("delta") or ""))
        elif name == "object":
            delta = self._object.delta(json.loads(event.data))
            if delta is None:
                self._fail("failed", "output_unstreamable", UNSTREAMABLE)
            else:
                self._text("message", delta)
        elif name in ("tool_call_delta", "tool_call"):
            call = json.loads(event.data)
            if "step" not in call:  # an agent's own call: it runs it, the client sees the answer
                self._call(call, done=name == "tool_call")
        elif name == "end":
            self._end(json.loads(event.data))
        elif name == "error":
            error = json.loads(event.data)
            code, message = error.get("code"), str(error.get("message", ""))
            if code in CONNECTION_ERRORS:
                self._emit("error", code=code, message=message, param=None)
            else:
                self._fail("cancelled" if code == "cancelled" else "failed", code, message)
        return self._events

    def _emit(self, kind: str, **fields: Any) -> None:
        self._events.append({"type": kind, **fields, "sequence_number": self._seq})
        self._seq += 1

    def _add(self, item: dict[str, Any]) -> int:
        index = len(self.output)
        self.output.append(item)
        self._emit("response.output_item.added", output_index=index, item=copy.deepcopy(item))
        return index

    def _text(self, kind: Literal["message", "reasoning"], delta: str) -> None:
        if not delta:
            return
        index = self._open
        if index is None or self.output[index]["type"] != kind:
            self._close_text("completed")
            index = self._open = self._open_text(kind)
        item = self.output[index]
        item["content"][0]["text"] += delta
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        if kind == "message":
            self._emit("response.output_text.delta", **where, delta=delta, logprobs=[])
        else:
            self._emit("response.reasoning_text.delta", **where, delta=delta)

    def _open_text(self, kind: Literal["message", "reasoning"]) -> int:
        prefix = "msg" if kind == "message" else "rs"
        item: dict[str, Any] = {"id": f"{prefix}_{self._suffix}_{len(self.output)}", "type": kind}
        if kind == "message":
            item.update(role="assistant", status="in_progress", content=[])
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        else:
            item.update(summary=[], content=[], status="in_progress")
            part = {"type": "reasoning_text", "text": ""}
        index = self._add(item)
        item["content"].append(part)
        self._emit("response.content_part.added", item_id=item["id"], output_index=index,
                   content_index=0, part=copy.deepcopy(part))  # fmt: skip
        return index

    def _close_text(self, status: str) -> None:
        if self._open is None:
            return
        index, self._open = self._open, None
        item = self.output[index]
        part = item["content"][0]
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        if item["type"] == "message":
            self._emit("response.output_text.done", **where, text=part["text"], logprobs=[])
        else:
            self._emit("response.reasoning_text.done", **where, text=part["text"])
        self._emit("response.content_part.done", **where, part=copy.deepcopy(part))
        item["status"] = status
        self._emit("response.output_item.done", output_index=index, item=copy.deepcopy(item))

    def _call(self, call: dict[str, Any], done: bool) -> None:
        key = int(call["index"])
        index = self._calls.get(key)
        if index is None:
            self._close_text("completed")  # the model moved on from its text
            item = {"id": f"fc_{self._suffix}_{len(self.output)}", "type": "function_call",
                    "call_id": call["id"], "name": call["name"], "arguments": "",
                    "status": "in_progress"}  # fmt: skip
            index = self._calls[key] = self._add(item)
        item = self.output[index]
        streamed = bool(item["arguments"])
        delta = "" if done and streamed else call.get("arguments_delta", "")
        if done and not streamed:  # a whole call, with no pieces before it
            delta = tool_call_json(call)["function"]["arguments"]
        if delta:
            item["arguments"] += delta
            self._emit("response.function_call_arguments.delta", item_id=item["id"],
                       output_index=index, delta=delta)  # fmt: skip
        if done:
            self._close_call(key, "completed")

    def _close_call(self, key: int, status: str) -> None:
        index = self._calls.pop(key)
        item = self.output[index]
        self._emit("response.function_call_arguments.done", item_id=item["id"],
                   output_index=index, arguments=item["arguments"])  # fmt: skip
        item["status"] = status
        self._emit("response.output_item.done", output_index=index, item=copy.deepcopy(item))

    def _close_all(self, status: str) -> None:
        self._close_text(status)
        for key in list(self._calls):
            self._close_call(key, status)

    def _end(self, summary: dict[str, Any]) -> None:
        cut = summary.get("finish_reason") == "length"
        self._close_all("incomplete" if cut else "completed")
        self.usage = responses_usage(summary.get("usage"))
        total_ms = (summary.get("timings") or {}).get("total_ms") or 0
        if cut:
            self.status = "incomplete"
            self.incomplete = {"reason": "max_output_tokens"}
            self._emit("response.incomplete", response=self.response())
            return
        self.status = "completed"
        self.completed_at = int(self.head["created_at"] + total_ms / 1000)
        self._emit("response.completed", response=self.response())

    def _fail(self, status: ResponseStatus, code: str | None, message: str) -> None:
        self._close_all("incomplete")
        self.status = status
        self.error = {"code": code, "message": message}
        self._emit("error", code=code, message=message, param=None)
        self._emit("response.failed", response=self.response())
