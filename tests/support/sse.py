"""A spec-compliant Server-Sent Events parser (WHATWG HTML §9.2.6), fed bytes as they arrive.

Hand-written rather than borrowed so tests see everything on the wire: comments
(keepalives), ids and retry fields, and exactly when each event arrived.
"""

import codecs
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    data: str
    id: str | None
    retry: int | None = None
    received_at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSEParser:
    """Incremental parser: `feed()` bytes, get back the events they completed."""

    comments: list[str] = field(default_factory=list)
    last_event_id: str | None = None
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")()
    )
    _pending: str = ""
    _data: list[str] = field(default_factory=list)
    _type: str = ""
    _retry: int | None = None
    _first: bool = True

    def feed(self, chunk: bytes) -> list[Event]:
        text = self._pending + self._decoder.decode(chunk)
        if self._first and text:
            text = text.removeprefix("\ufeff")
            self._first = False
        events: list[Event] = []
        for line, complete in _lines(text):
            if not complete:
                self._pending = line
                break
            event = self._line(line)
            if event is not None:
                events.append(event)
        else:
            self._pending = ""
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:].removeprefix(" "))
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, kind, retry = self._data, self._type, self._retry
        self._data, self._type, self._retry = [], "", None
        if not data:
            return None
        return Event(kind or "message", "\n".join(data), self.last_event_id, retry)


def _lines(text: str) -> Iterator[tuple[str, bool]]:
    """Split on CRLF, LF or CR; the last piece is incomplete unless the text ended a line."""
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "\r\n":
            if ch == "\r" and i + 1 == len(text):
                break  # a CR at the very end may be half of a CRLF: wait for more
            yield text[start:i], True
            i += 2 if text.startswith("\r\n", i) else 1
            start = i
            continue
        i += 1
    yield text[start:], False


async def aiter_events(
    response: httpx.Response, parser: SSEParser | None = None
) -> AsyncIterator[Event]:
    parser = parser or SSEParser()
    async for chunk in response.aiter_raw():
        for event in parser.feed(chunk):
            yield event


def parse_all(body: bytes) -> list[Event]:
    return SSEParser().feed(body)
