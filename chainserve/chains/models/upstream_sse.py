"""Reading a provider's Server-Sent Events: incrementally, bounded, and honest about the end.

Three provider faults shape this module:
- an enormous line: each byte is looked at once (the unfinished line is kept as a list of
  parts, joined once when its newline arrives), and an event over `max_event_bytes` fails the
  stream instead of growing the buffer until memory runs out;
- a body that is not an event stream at all (a proxy's HTML error page with status 200, random
  bytes, `data: <<<garbage>>>`): the provider's fault, raised as an `openai.APIError`;
- a stream cut short: a body that ends (closed, or properly terminated) with neither
  `data: [DONE]` nor any `finish_reason` is not a complete answer, however clean its end.
"""

from collections.abc import AsyncIterator

import httpx2
import openai

DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024


class UpstreamUnreadableError(openai.APIError):
    """The provider answered 2xx with something that is not a Chat Completions event stream."""

    def __init__(self, message: str, request: httpx2.Request) -> None:
        super().__init__(message, request, body=None)


class UpstreamIncompleteError(openai.APIConnectionError):
    """The stream ended before the answer did (no `[DONE]`, no `finish_reason`).

    A connection error by type: nothing marks the answer complete, exactly as if the
    connection had dropped, so it is retried like one while no output has been produced."""

    def __init__(self, request: httpx2.Request) -> None:
        super().__init__(
            message=(
                "The model provider's stream ended before the answer was complete "
                "(no finish_reason and no [DONE])."
            ),
            request=request,
        )


class EventTooLargeError(ValueError):
    """One SSE event grew past the size limit."""


async def sse_events(
    chunks: AsyncIterator[bytes], max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> AsyncIterator[tuple[bytes, bytes]]:
    """Yield `(event, data)` for each SSE event in a byte stream (event is b"" when unnamed).

    Linear in the bytes received; raises `EventTooLargeError` once the event being read
    (its data lines so far plus the unfinished line) exceeds `max_event_bytes`."""
    pending: list[bytes] = []
    pending_size = 0
    event = b""
    data: list[bytes] = []
    data_size = 0
    async for block in chunks:
        lines = block.split(b"\n")
        if len(lines) == 1:  # no line ends in this block
            pending.append(block)
            pending_size += len(block)
            if pending_size + data_size > max_event_bytes:
                raise EventTooLargeError(_too_large(max_event_bytes))
            continue
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending = []
        tail = lines.pop()
        pending_size = len(tail)
        if tail:
            pending.append(tail)
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                if data:
                    yield event, b"\n".join(data)
                event, data, data_size = b"", [], 0
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
                data_size += len(value)
                if data_size > max_event_bytes:
                    raise EventTooLargeError(_too_large(max_event_bytes))
            elif line.startswith(b"event:"):
                event = line[6:].strip()
        if pending_size + data_size > max_event_bytes:
            raise EventTooLargeError(_too_large(max_event_bytes))
    # An event cut off before its blank line is never dispatched (SSE spec, end of stream).


def _too_large(limit: int) -> str:
    return f"The model provider sent one stream event larger than the {limit}-byte limit."
