"""One event model for every output shape a chain streams, so each surface maps the same events
instead of guessing from raw chunks (`docs/protocol.md`, "Output events").

A chain's `astream` yields text (`str`), message chunks (a model's output: text, reasoning,
tool-call pieces), or values: a `dict` snapshot from `JsonOutputParser` or
`with_structured_output`, a pydantic model, or the `AddableDict` deltas of a
`RunnableParallel`. `OutputEvents` turns each chunk into named events:

- `object`: `{"value": ...}`, the whole structured output so far. Snapshots replace the
  value; `AddableDict` deltas are added to it as LangChain adds them (`+`), and say so with
  `"merged": true` (any key's value may still grow, not only the last one's). `finish`
  ends with one more `object` event marked `"complete": true`.
- `tool_call_delta`: `{"index", "id", "name", "arguments_delta"}`, a piece of a tool call's
  JSON arguments as the model streams it.
- `tool_call`: `{"index", "id", "name", "arguments"}` once the model's message has ended,
  arguments parsed (a string when they are not valid JSON, with `"invalid": true`).
- `reasoning`: `{"delta": ...}`, reasoning text a model sends besides its answer.
- `step` and `tool_result`: an agent's turns and what its tools returned; they arrive as
  `EventChunk`s (`chains/agents.py`) and pass through as they are. Tool calls made inside an
  agent's step carry that step's `"step"` index: the agent runs them, not the client.

Text itself is not an event here: it stays the chunk it always was (the `data` event).
"""

import json
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, BaseMessageChunk
from langchain_core.runnables.utils import AddableDict

OutputEvent = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class EventChunk:
    """A chunk that is only an output event, with no `data` of its own (an agent's step)."""

    name: str
    body: dict[str, Any]


@dataclass
class _Call:
    index: int
    id: str
    name: str
    arguments: str = ""
    parsed: Any = None
    done: bool = False
    step: int | None = None


@dataclass
class OutputEvents:
    """Turns one run's chunks into output events, and keeps what the run's record needs."""

    value: Any = None
    """The structured output so far (None: the chain has streamed no value)."""
    has_value: bool = False
    calls: list[_Call] = field(default_factory=list)
    """Every tool call the run's model made, in order."""
    _open: dict[int, _Call] = field(default_factory=dict)
    _step: int | None = None
    """The agent step under way, whose tool calls the agent runs itself."""

    def feed(self, chunk: Any) -> list[OutputEvent]:
        """The events one chunk adds (none for text)."""
        if isinstance(chunk, str) or chunk is None:
            return []
        if isinstance(chunk, EventChunk):
            if chunk.name == "step":
                started = chunk.body.get("status") == "start"
                self._step = chunk.body.get("index") if started else None
            return [(chunk.name, chunk.body)]
        if isinstance(chunk, BaseMessage):
            return self._message(chunk)
        if isinstance(chunk, AddableDict) and isinstance(self.value, AddableDict):
            self.value = self.value + chunk
        else:
            self.value = chunk
        self.has_value = True
        return [("object", self._object())]

    def finish(self) -> list[OutputEvent]:
        """The events that close the run's output: open tool calls, the complete object."""
        events = self._close_calls()
        if self.has_value:
            events.append(("object", {**self._object(), "complete": True}))
        return events

    def _object(self) -> dict[str, Any]:
        if isinstance(self.value, AddableDict):
            return {"value": self.value, "merged": True}
        return {"value": self.value}

    def tool_calls(self) -> list[dict[str, Any]]:
        """The complete tool calls, as `GET /runs/{id}` and `/v1` report them."""
        return [_call_event(call) for call in self.calls if call.done]

    def _message(self, message: BaseMessage) -> list[OutputEvent]:
        events: list[OutputEvent] = []
        reasoning = _reasoning(message)
        if reasoning:
            events.append(("reasoning", {"delta": reasoning}))
        if isinstance(message, BaseMessageChunk):
            for position, piece in enumerate(getattr(message, "tool_call_chunks", None) or ()):
                events.extend(self._piece(piece, position))
            if _ends(message):
                events.extend(self._close_calls())
        elif isinstance(message, AIMessage):
            for call in message.tool_calls:
                whole = _Call(
                    len(self.calls), str(call.get("id") or ""), call["name"], step=self._step
                )
                whole.arguments, whole.parsed = json.dumps(call["args"]), call["args"]
                whole.done = True
                self.calls.append(whole)
                events.append(("tool_call", _call_event(whole)))
        return events

    def _piece(self, piece: Any, position: int) -> list[OutputEvent]:
        index = piece.get("index")
        index = index if isinstance(index, int) else position
        call = self._open.get(index)
        if call is None:
            call = _Call(len(self.calls), str(piece.get("id") or ""), str(piece.get("name") or ""))
            call.step = self._step
            self._open[index] = call
            self.calls.append(call)
        call.id = call.id or str(piece.get("id") or "")
        call.name = call.name or str(piece.get("name") or "")
        delta = piece.get("args") or ""
        call.arguments += delta
        body = {"index": call.index, "id": call.id, "name": call.name, "arguments_delta": delta}
        return [("tool_call_delta", _in_step(body, call))]

    def _close_calls(self) -> list[OutputEvent]:
        events: list[OutputEvent] = []
        for call in self._open.values():
            call.done = True
            try:
                call.parsed = json.loads(call.arguments) if call.arguments.strip() else {}
            except ValueError:
                call.parsed = None
            events.append(("tool_call", _call_event(call)))
        self._open.clear()
        return events


def _call_event(call: _Call) -> dict[str, Any]:
    body: dict[str, Any] = {"index": call.index, "id": call.id, "name": call.name}
    if call.parsed is None and call.arguments.strip():
        return _in_step({**body, "arguments": call.arguments, "invalid": True}, call)
    return _in_step({**body, "arguments": call.parsed if call.parsed is not None else {}}, call)


def _in_step(body: dict[str, Any], call: _Call) -> dict[str, Any]:
    return body if call.step is None else {**body, "step": call.step}


def _ends(message: BaseMessageChunk) -> bool:
    """Whether this chunk is its message's last: LangChain marks it, or a finish reason says."""
    return getattr(message, "chunk_position", None) == "last" or bool(
        message.response_metadata.get("finish_reason")
    )


def _reasoning(message: BaseMessage) -> str:
    """Reasoning text in a message: OpenAI-compatible servers' `reasoning_content`, or
    LangChain's standard `reasoning` content blocks."""
    text = message.additional_kwargs.get("reasoning_content")
    if isinstance(text, str) and text:
        return text
    if isinstance(message.content, list):
        return "".join(
            str(block.get("reasoning") or block.get("thinking") or "")
            for block in message.content
            if isinstance(block, dict) and block.get("type") in ("reasoning", "thinking")
        )
    return ""
