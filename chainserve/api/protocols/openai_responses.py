"""OpenAI's Responses API on the wire: response ids, the `response` object, its typed SSE events.

A response is a run: its id is `resp_` + the run id's hex digits, so the run log is all the
store a response needs. A response made with `store: false` gets an id of its own instead,
which leads nowhere: it cannot be retrieved or continued.
"""

import uuid
from typing import Any

from fastapi.sse import format_sse_event

from chainserve.api.protocols.openai_chat import openai_error
from chainserve.api.protocols.response_events import ResponseFold, responses_usage
from chainserve.api.runs.encoding import to_json
from chainserve.api.runs.log import RunEvent, RunGone, RunLog, RunRecord

PREFIX = "resp_"


def response_id_of(run_id: str) -> str:
    return PREFIX + uuid.UUID(run_id).hex


def unstored_response_id() -> str:
    return PREFIX + uuid.uuid4().hex


def run_id_of(response_id: str) -> str | None:
    """The run behind a response id; None for anything that is not one of ours."""
    digits = response_id.removeprefix(PREFIX)
    if digits == response_id or len(digits) != 32:
        return None
    try:
        return str(uuid.UUID(hex=digits))
    except ValueError:
        return None


ECHO_DEFAULTS: dict[str, Any] = {
    "background": None,
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": True,
    "temperature": None,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": None,
    "truncation": "disabled",
    "user": None,
}
"""The request's parameters as a response repeats them; a retrieved response has these (the
run log does not keep a request's parameters)."""


def response_head(
    response_id: str, created_at: float, model: str, echo: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A response's fixed fields, for `ResponseFold`."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(created_at),
        "model": model,
        **ECHO_DEFAULTS,
        **(echo or {}),
    }


class OpenAIResponsesProtocol:
    """A run as Responses stream events: `event:` names, JSON data, a `sequence_number` on
    each; those up to `starting_after` are left out (a client resuming a stream)."""

    headers: dict[str, str] = {}  # noqa: RUF012 - never mutated

    def __init__(self, fold: ResponseFold, starting_after: int = -1) -> None:
        self.fold = fold
        self._after = starting_after

    def frame(self, event: RunEvent) -> bytes:
        return b"".join(
            format_sse_event(data_str=to_json(body), event=body["type"])
            for body in self.fold.feed(event)
            if body["sequence_number"] > self._after
        )

    def error_body(self, status: int, error: dict[str, Any]) -> dict[str, Any]:
        return openai_error(status, error.get("code"), error.get("message", ""))


async def current_response(log: RunLog, record: RunRecord, head: dict[str, Any]) -> dict[str, Any]:
    """The response as its run stands now: its events folded, or, once the run log no longer
    keeps them all, what the run's record keeps (its text, structured output and tool calls)."""
    fold = ResponseFold(head)
    try:
        events = await log.read(record.run_id, -1, 0)
    except (RunGone, KeyError):
        return from_record(fold, record)
    for event in events:
        fold.feed(event)
    return fold.response()


def from_record(fold: ResponseFold, record: RunRecord) -> dict[str, Any]:
    """The response rebuilt from a run's record alone: its reasoning and the order of its
    items are lost with the events, the rest is there."""
    suffix = str(fold.head["id"]).removeprefix(PREFIX)
    text = record.output
    if record.structured_output is not None:
        text = to_json(record.structured_output)
    item_status = "in_progress" if record.status == "running" else "completed"
    if text:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        fold.output.append({"id": f"msg_{suffix}_0", "type": "message", "role": "assistant",
                            "status": item_status, "content": [part]})  # fmt: skip
    for call in record.tool_calls or []:
        if "step" in call:
            continue
        arguments = call["arguments"]
        fold.output.append({
            "id": f"fc_{suffix}_{len(fold.output)}", "type": "function_call",
            "call_id": call["id"], "name": call["name"], "status": "completed",
            "arguments": arguments if isinstance(arguments, str) else to_json(arguments),
        })  # fmt: skip
    fold.usage = responses_usage(record.usage)
    if record.status == "done":
        cut = record.finish_reason == "length"
        fold.status = "incomplete" if cut else "completed"
        fold.incomplete = {"reason": "max_output_tokens"} if cut else None
    elif record.status != "running":
        fold.status = "cancelled" if record.status == "cancelled" else "failed"
        error = record.error or {}
        fold.error = {"code": error.get("code"), "message": str(error.get("message", ""))}
    return fold.response()
