"""The load generator: a minimal asyncio HTTP/1.1 client that POSTs JSON and times SSE tokens.

Built on `asyncio.Protocol` rather than streams or httpx: `data_received` decodes whatever one
socket read delivered (chunked or content-length body, then SSE) and stamps every token it
completed with one `perf_counter()` read. No coroutine runs per chunk, which is what lets one
process follow 1,000 concurrent streams while the servers under test share the same cores.
"""

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from bench.sse import ChunkedDecoder, Dialect, EventCounter

MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Call:
    """One streaming request: where it goes, what it sends, how its tokens are framed."""

    port: int
    path: str
    body: bytes
    dialect: Dialect
    host: str = "127.0.0.1"

    def request_bytes(self) -> bytes:
        return (
            f"POST {self.path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: text/event-stream\r\n"
            f"Content-Length: {len(self.body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + self.body


@dataclass
class StreamResult:
    """What one request saw: status, when it started, and when each token arrived."""

    started: float
    status: int = 0
    times: list[float] = field(default_factory=list)
    complete: bool = False
    """The body ended where its framing said (last chunk, or Content-Length reached)."""
    error: str | None = None

    @property
    def tokens(self) -> int:
        return len(self.times)

    @property
    def ttft(self) -> float | None:
        return self.times[0] - self.started if self.times else None

    def ok(self, expected: int | None = None) -> bool:
        good = self.status == 200 and self.complete and self.error is None
        return good and (expected is None or self.tokens == expected)

    def gaps(self) -> list[float]:
        t = self.times
        return [b - a for a, b in itertools.pairwise(t)]

    def rate(self) -> float | None:
        """Tokens per second from first to last token (None with fewer than two)."""
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return None
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


class _SSEProtocol(asyncio.Protocol):
    """One request on its own connection: head, then body (chunked, sized or to EOF), then SSE.

    `closed` resolves when the connection is gone, whatever the reason; the `StreamResult`
    says whether the body ended where its framing said it would."""

    def __init__(self, request: bytes, dialect: Dialect, result: StreamResult) -> None:
        self._request = request
        self._result = result
        self._counter = EventCounter(dialect)
        self._head = b""
        self._chunked: ChunkedDecoder | None = None
        self._remaining: int | None = None
        """Body bytes still expected with Content-Length; None until the head, or to EOF."""
        self._in_body = False
        self._transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self._in_body:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > MAX_HEAD_BYTES:
                    self._fail("response head too large")
                return
            data = self._head[end + 4 :]
            self._parse_head(self._head[:end])
            self._in_body = True
        self._body(data, now)

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        self._result.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "transfer-encoding" and "chunked" in value.lower():
                self._chunked = ChunkedDecoder()
            elif name == "content-length":
                self._remaining = int(value.strip())

    def _body(self, data: bytes, now: float) -> None:
        if not data:
            if self._remaining == 0 and self._chunked is None:
                self._end()
            return
        if self._chunked is not None:
            pieces = self._chunked.feed(data)
            payload = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        elif self._remaining is not None:
            payload = data[: self._remaining]
            self._remaining -= len(payload)
        else:
            payload = data
        if self._result.status == 200:
            tokens = self._counter.feed(payload)
            if tokens:
                self._result.times.extend([now] * tokens)
        elif len(payload) and self._result.error is None:
            self._result.error = f"HTTP {self._result.status}: " + payload[:200].decode(
                "utf-8", "replace"
            )
        if (self._chunked is not None and self._chunked.finished) or self._remaining == 0:
            self._end()

    def _end(self) -> None:
        self._result.complete = True
        if self._counter.error is not None and self._result.error is None:
            self._result.error = "error event: " + self._counter.error
        if self._transport is not None:
            self._transport.close()

    def _fail(self, reason: str) -> None:
        if self._result.error is None:
            self._result.error = reason
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._result.complete:
            if self._chunked is None and self._remaining is None and self._in_body:
                self._end()  # a body delimited by closing the connection
            elif self._result.error is None:
                self._result.error = f"connection closed early ({exc or 'EOF'})"
        if not self.closed.done():
            self.closed.set_result(None)

    def abort(self, reason: str) -> None:
        self._fail(reason)


async def stream(call: Call, time_limit: float, request: bytes | None = None) -> StreamResult:
    """Send `call` on a fresh connection and follow its stream to the end or for `time_limit` s."""
    loop = asyncio.get_running_loop()
    result = StreamResult(started=time.perf_counter())
    protocol: _SSEProtocol | None = None
    try:
        async with asyncio.timeout(time_limit):
            _, protocol = await loop.create_connection(
                lambda: _SSEProtocol(request or call.request_bytes(), call.dialect, result),
                call.host,
                call.port,
            )
            await protocol.closed
    except TimeoutError:
        if protocol is not None:
            protocol.abort(f"timed out after {time_limit:.0f} s")
        result.error = result.error or f"timed out after {time_limit:.0f} s"
    except OSError as exc:
        result.error = result.error or f"{type(exc).__name__}: {exc}"
    return result


async def stream_many(
    call: Call, count: int, ramp_seconds: float, time_limit: float
) -> list[StreamResult]:
    """`count` concurrent streams, started evenly over `ramp_seconds` (independent phases)."""
    request = call.request_bytes()
    start = time.perf_counter()

    async def one(index: int) -> StreamResult:
        delay = start + ramp_seconds * index / count - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        return await stream(call, time_limit, request)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def sequential(call: Call, count: int, time_limit: float) -> Sequence[StreamResult]:
    """`count` requests one after another (for time-to-first-token)."""
    return [await stream(call, time_limit) for _ in range(count)]
