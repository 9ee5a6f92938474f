"""Incremental decoding of a streamed HTTP/1.1 body into Server-Sent Events, and token counting.

Both decoders work on whatever bytes one socket read delivered and do their scanning with bytes
methods (C speed), so a single client process can follow a thousand streams at once. Which events
count as a *token* depends on the dialect (see `Dialect`): framing (`metadata`, `end`), comments,
keepalives, role-only and usage-only chunks are never counted.
"""

import enum
from collections.abc import Callable
from dataclasses import dataclass, field


class ChunkedDecoder:
    """`transfer-encoding: chunked`: feed raw bytes, get payload bytes; `finished` at `0\\r\\n`."""

    def __init__(self) -> None:
        self._pending = b""
        self._need = 0
        """Payload bytes still to come in the current chunk."""
        self._skip = 0
        """Bytes of the CRLF after a chunk's payload still to drop."""
        self.finished = False

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._pending + data if self._pending else data
        out: list[bytes] = []
        pos, end = 0, len(buf)
        # Each pass consumes at least one byte or breaks, so this ends within len(buf) passes.
        while pos < end and not self.finished:
            if self._need:
                take = min(self._need, end - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._need -= take
                if not self._need:
                    self._skip = 2
            elif self._skip:
                take = min(self._skip, end - pos)
                pos += take
                self._skip -= take
            else:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(buf[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                if size == 0:
                    self.finished = True  # trailers, if any, are ignored
                else:
                    self._need = size
        self._pending = buf[pos:]
        return out


class Dialect(enum.Enum):
    """How a server frames tokens, hence which SSE events carry one."""

    NAMED = "named"
    """chainserve and LangServe: `event: data` with a JSON string `data:`."""
    PLAIN = "plain"
    """The tutorial pattern: unnamed events, one `data: <json string>` per token."""
    OPENAI = "openai"
    """OpenAI `chat.completion.chunk` messages: count those with non-empty `delta.content`."""


_EMPTY = (b"", b'""', b"null", b"[DONE]")


def event_fields(block: bytes) -> tuple[bytes, bytes | None]:
    """(event name, data) of one event block whose lines end in `\\n`; data None if absent."""
    name = b"message"
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            name = line[6:].strip()
    return name, b"\n".join(data) if data else None


def _named(name: bytes, data: bytes | None) -> bool:
    # A message chunk with empty content (an agent's end-of-turn chunk) carries no token.
    return (
        name == b"data"
        and data is not None
        and data not in _EMPTY
        and not (data.startswith(b"{") and b'"content":""' in data)
    )


def _plain(name: bytes, data: bytes | None) -> bool:
    return name == b"message" and data is not None and data not in _EMPTY


def _openai(name: bytes, data: bytes | None) -> bool:
    return (
        name == b"message"
        and data is not None
        and b'"content":"' in data
        and b'"content":""' not in data
    )


IS_TOKEN: dict[Dialect, Callable[[bytes, bytes | None], bool]] = {
    Dialect.NAMED: _named,
    Dialect.PLAIN: _plain,
    Dialect.OPENAI: _openai,
}


@dataclass
class EventCounter:
    """Splits a body into events and counts the tokens among them; remembers an `error` event."""

    dialect: Dialect
    error: str | None = None
    _tail: bytes = field(default=b"", repr=False)

    def feed(self, data: bytes) -> int:
        """Tokens completed by `data` (an event counts once its blank line has arrived)."""
        buf = (self._tail + data).replace(b"\r\n", b"\n")
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self._tail = buf
            return 0
        self._tail = buf[cut + 2 :]
        is_token = IS_TOKEN[self.dialect]
        count = 0
        for block in buf[:cut].split(b"\n\n"):
            name, value = event_fields(block.strip(b"\n"))
            if is_token(name, value):
                count += 1
            elif name == b"error" and self.error is None:
                self.error = (value or b"").decode("utf-8", "replace")[:300]
        return count
