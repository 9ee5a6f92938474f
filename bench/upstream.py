"""A fast mock of OpenAI's Chat Completions API: the upstream every server under test streams from.

Raw `asyncio.start_server` and a minimal HTTP/1.1 parser instead of a framework, so the upstream's
own cost per chunk stays a small, fixed fraction of what the servers under test spend. Behaviour is
fixed per process (`--chunks`, `--rate`, `--first-delay`); the benchmark starts one per scenario.

- `--rate 0`: every SSE message is its own `transfer-encoding: chunked` chunk, and 64 of them go out
  per socket write, so the upstream is never the bottleneck.
- `--rate R`: one write per token, R tokens per second, as a live model does. A single shared timer
  (`Pacer`) drives all open streams instead of one `asyncio.sleep` per token per stream, so a
  thousand paced streams cost the upstream a few hundred wake-ups a second, not fifty thousand.
"""

import argparse
import asyncio
import contextlib
import heapq
import itertools
import json
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

WORDS = (" alpha", " beta", " gamma", " delta", " omega", " sigma", " kappa", " theta")
"""One short word per content chunk, with the leading space real tokenizers produce."""

BATCH = 64
"""SSE messages per socket write at rate 0."""

TICK_SECONDS = 0.001
"""The pacer's resolution: a token is written at most this late, and the timer wakes at most
1,000 times a second however many streams are open. Not finer: uvloop's clock and timers have
millisecond resolution, and a shorter sleep returns at once (a busy loop)."""

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\n"
    b"x-request-id: req_bench\r\n"
    b"transfer-encoding: chunked\r\n"
    b"\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"


@dataclass(frozen=True)
class Behaviour:
    """How this upstream answers every streaming request."""

    chunks: int
    rate: float
    first_delay: float


def frame(payload: bytes) -> bytes:
    """One HTTP/1.1 `transfer-encoding: chunked` chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass(frozen=True)
class Frames:
    """Every message of a stream, pre-encoded and pre-framed: a token costs one lookup."""

    role: bytes
    content: tuple[bytes, ...]
    finish: bytes
    usage: bytes
    done: bytes

    def content_at(self, index: int) -> bytes:
        return self.content[index % len(self.content)]

    def tail(self, include_usage: bool) -> bytes:
        """Everything after the last content chunk, ending the chunked body."""
        return self.finish + (self.usage if include_usage else b"") + self.done + LAST_CHUNK


@lru_cache(maxsize=16)
def frames_for(model: str, chunks: int) -> Frames:
    return Frames(
        role=frame(_sse(_chunk(model, {"role": "assistant", "content": "", "refusal": None}))),
        content=tuple(frame(_sse(_chunk(model, {"content": word}))) for word in WORDS),
        finish=frame(_sse(_chunk(model, {}, "stop"))),
        usage=frame(
            _sse(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion.chunk",
                    "created": 1_700_000_000,
                    "model": model,
                    "system_fingerprint": None,
                    "choices": [],
                    "usage": _usage(8, chunks),
                }
            )
        ),
        done=frame(b"data: [DONE]\n\n"),
    )


@dataclass(eq=False)
class PacedStream:
    """One streaming response whose tokens the `Pacer` writes on schedule."""

    writer: asyncio.StreamWriter
    frames: Frames
    chunks: int
    include_usage: bool
    done: asyncio.Future[None]
    sent: int = 0

    def emit(self) -> bool:
        """Write the next token (the first one with the role chunk); False once finished."""
        if self.writer.transport.is_closing():
            self._finish()
            return False
        out = self.frames.content_at(self.sent)
        if self.sent == 0:
            out = self.frames.role + out
        self.sent += 1
        if self.sent >= self.chunks:
            out += self.frames.tail(self.include_usage)
        self.writer.write(out)
        if self.sent >= self.chunks:
            self._finish()
            return False
        return True

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


@dataclass(eq=False)
class Pacer:
    """One timer for every paced stream: a heap of due times, drained every `TICK_SECONDS`."""

    interval: float
    _heap: list[tuple[float, int, PacedStream]] = field(default_factory=list)
    _order: Iterator[int] = field(default_factory=itertools.count)
    _task: asyncio.Task[None] | None = None

    def add(self, stream: PacedStream, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._order), stream))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        heap = self._heap
        while heap:
            now = loop.time()
            while heap and heap[0][0] <= now:
                due, order, stream = heapq.heappop(heap)
                if stream.emit():
                    # Absolute schedule: lateness in one tick does not push later tokens back.
                    heapq.heappush(heap, (due + self.interval, order, stream))
            if heap:
                await asyncio.sleep(max(heap[0][0] - loop.time(), TICK_SECONDS))


class HttpError(Exception):
    """A request this parser refuses; answered with `status` and the connection closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """Parse one HTTP/1.1 request (Content-Length bodies only); None when the peer hung up."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise HttpError(431, "Request Header Fields Too Large") from exc
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise HttpError(400, "Bad Request")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(400, "Bad Request")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HttpError(411, "Length Required")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise HttpError(400, "Bad Request") from exc
    if not 0 <= length <= MAX_BODY_BYTES:
        raise HttpError(413, "Content Too Large")
    body = await reader.readexactly(length) if length else b""
    return Request(parts[0], parts[1].split("?", 1)[0], headers, body)


def json_response(status: int, reason: str, obj: dict[str, Any], keep_alive: bool = True) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    connection = b"keep-alive" if keep_alive else b"close"
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: %s\r\n\r\n%s" % (status, reason.encode(), len(body), connection, body)
    )


def completion(model: str, chunks: int) -> dict[str, Any]:
    """The non-streaming answer: the same words the stream would carry."""
    text = "".join(WORDS[i % len(WORDS)] for i in range(chunks))
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(8, chunks),
    }


class Upstream:
    """The server: one coroutine per connection, keep-alive, one request at a time."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.pacer = Pacer(1.0 / behaviour.rate) if behaviour.rate > 0 else None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Bounded by the peer: each pass consumes one request, and EOF ends the loop.
        while True:
            try:
                request = await read_request(reader)
            except HttpError as exc:
                writer.write(json_response(exc.status, exc.reason, {"error": exc.reason}, False))
                await writer.drain()
                return
            if request is None:
                return
            await self._dispatch(request, writer)
            if not request.keep_alive:
                return

    async def _dispatch(self, request: Request, writer: asyncio.StreamWriter) -> None:
        if request.method == "POST" and request.path == "/v1/chat/completions":
            try:
                payload = json.loads(request.body)
            except ValueError:
                writer.write(json_response(400, "Bad Request", {"error": "invalid json"}))
                return
            if not isinstance(payload, dict):
                writer.write(json_response(400, "Bad Request", {"error": "expected an object"}))
                return
            await self._chat(payload, writer, request.keep_alive)
        elif request.method == "GET" and request.path in ("/health", "/v1/models"):
            writer.write(json_response(200, "OK", {"object": "list", "data": []}))
        else:
            writer.write(json_response(404, "Not Found", {"error": "not found"}))

    async def _chat(
        self, payload: dict[str, Any], writer: asyncio.StreamWriter, keep_alive: bool
    ) -> None:
        model = str(payload.get("model") or "gpt-4o-mini")
        chunks = self.behaviour.chunks
        if not payload.get("stream"):
            if self.behaviour.first_delay:
                await asyncio.sleep(self.behaviour.first_delay)
            writer.write(json_response(200, "OK", completion(model, chunks), keep_alive))
            await writer.drain()
            return
        options = payload.get("stream_options") or {}
        include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        frames = frames_for(model, chunks)
        writer.write(SSE_HEAD)
        if self.behaviour.first_delay:
            await asyncio.sleep(self.behaviour.first_delay)
        if self.pacer is None or chunks == 0:
            await self._burst(writer, frames, chunks, include_usage)
            return
        loop = asyncio.get_running_loop()
        stream = PacedStream(writer, frames, chunks, include_usage, loop.create_future())
        self.pacer.add(stream, loop.time())
        await stream.done
        await writer.drain()

    @staticmethod
    async def _burst(
        writer: asyncio.StreamWriter, frames: Frames, chunks: int, include_usage: bool
    ) -> None:
        """Rate 0: all messages as fast as the reader takes them, `BATCH` per write."""
        batch = [frames.role]
        for index in range(chunks):
            batch.append(frames.content_at(index))
            if len(batch) >= BATCH:
                writer.write(b"".join(batch))
                batch.clear()
                await writer.drain()
        batch.append(frames.tail(include_usage))
        writer.write(b"".join(batch))
        await writer.drain()


async def serve(host: str, port: int, behaviour: Behaviour, max_seconds: float) -> None:
    """Serve until SIGTERM/SIGINT or `max_seconds`, whichever comes first."""
    upstream = Upstream(behaviour)
    server = await asyncio.start_server(
        upstream.handle, host, port, limit=MAX_HEAD_BYTES, backlog=4096
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max_seconds)


def _loop_factory() -> Any:
    try:
        import uvloop  # the servers under test run on uvloop too
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Mock OpenAI Chat Completions upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=200, help="content chunks per stream")
    parser.add_argument("--rate", type=float, default=0.0, help="tokens/s per stream, 0 = max")
    parser.add_argument("--first-delay", type=float, default=0.0, help="seconds before token 1")
    parser.add_argument(
        "--max-seconds", type=float, default=3600.0, help="exit by itself after this long"
    )
    args = parser.parse_args(argv)
    if args.chunks < 0 or args.rate < 0 or args.first_delay < 0:
        parser.error("--chunks, --rate and --first-delay must not be negative")
    behaviour = Behaviour(args.chunks, args.rate, args.first_delay)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(args.host, args.port, behaviour, args.max_seconds))
    sys.exit(0)


if __name__ == "__main__":
    main()
